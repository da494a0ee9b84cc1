"""The agent's loop: NFS-side events, Windows-side polls, retries, requests, status, signals."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filesim.nas import faults
from filesim.sync import status as protocol
from filesim.sync.inotify import REQUESTS_CHANGED, RESCAN, Events, NfsEvents
from filesim.sync.items import Settings as Decisions
from filesim.sync.journal import JOURNAL, STALE, JournalReader
from filesim.sync.names import display
from filesim.sync.plan import NFS, WINDOWS
from filesim.sync.problems import Problems
from filesim.sync.reconcile import Reconciler
from filesim.sync.schedule import SAFETY_SHARE, ScanCost
from filesim.sync.settings import Settings
from filesim.sync.state import State
from filesim.sync.tree import (
    DestinationChanged,
    Poll,
    SideUnavailable,
    Sig,
    SourceChanged,
    Tree,
    temp_prefix,
)
from filesim.sync.versions import FOLDER, Versions, nfs_versions, share_versions

DEBOUNCE = 0.05
TICK = 0.25
FLUSH_BUDGET = 1.5
#: The daemon's first passes settle what they found for at most this long before events start.
INITIAL_SETTLE = 10.0
SUMMARY_EVERY = 60.0
SWEEP_BATCH = 200
#: What hashing one file costs at least, in bytes read (a small file still costs round trips).
SWEEP_FLOOR = 4096
#: The Windows root unreachable this long (a dead 9p mount): exit so the container restarts
#: with a fresh mount.
SHARE_LOST_AFTER = 30.0
EXIT_SHARE_LOST = 4


class ShareLost(Exception):
    """The Windows share stayed unreachable; a restart gives the container a fresh mount."""


class Agent:
    """Keeps the NFS export and the Windows share in agreement until told to stop."""

    def __init__(self, settings: Settings, log: logging.Logger):
        self.settings = settings
        self.log = log
        self.state = State(settings.state)
        temp = temp_prefix(self.state.temp_token())
        # NFS clients act as any uid, root squashed to nobody: what the agent writes into a
        # writable export stays writable for all of them.
        writable = settings.mode != "to-nfs"
        self.nfs = Tree(settings.nfs, NFS, file_mode=0o666 if writable else 0o644,
                        dir_mode=0o777 if writable else 0o755, temp=temp)
        self.windows = Tree(settings.windows, WINDOWS, windows=True, temp=temp)
        # What the agent deletes or replaces is kept: on Windows beside the NAS folder (its
        # deletion cannot take them), on NFS in the state folder (never in the export).
        kept = {"days": settings.versions_days, "max_bytes": settings.versions_max_bytes}
        windows_kept = Tree(share_versions(settings.windows), "versions", windows=True, temp=temp)
        self.versions = Versions(windows_kept.root, walk_dir=windows_kept.walk_dir,
                                 root_length=len(settings.windows_root) - len(settings.windows.name)
                                 + len(f"{FOLDER}/{settings.windows.name}"), **kept)
        self.nfs_versions = Versions(nfs_versions(settings.state), **kept)
        self.windows.keep, self.nfs.keep = self.versions.keep, self.nfs_versions.keep
        self.problems = Problems(log)
        self.reconciler = Reconciler(
            self.nfs, self.windows, self.state,
            Decisions(settings.mode, settings.settle, settings.max_delay,
                      settings.max_delete_fraction, settings.max_delete_rate,
                      settings.windows_names, len(settings.windows_root)),
            self.problems, log, share_ok=self._same_share)
        self.events = Events()
        self._requests = settings.state / protocol.REQUESTS
        self.nfs_events = NfsEvents(self.nfs, self.events, self.reconciler.complete[NFS], log,
                                    requests=self._requests)
        self.journal = JournalReader(settings.windows / JOURNAL, log, self.events.wake_on)
        #: Whether the host watcher's hints are relied on (else the Windows side is polled).
        self.hinted = False
        #: Hinted Windows paths read by an idle tick, for the loop's next round.
        self.hinted_paths: set[str] = set()
        #: Set by the SIGTERM/SIGINT handler. A plain flag: a handler runs between two bytecodes
        #: of the main thread and must take no lock that code may hold (a queue's lock once did).
        self.stop_requested = False
        self.started_at = time.time()
        self.interval = settings.interval
        self.costs = {NFS: ScanCost(), WINDOWS: ScanCost()}
        self.next_poll = self.next_rescan = 0.0
        #: When the loop must do its work next even if nothing arrives (monotonic clock).
        self.due = 0.0
        #: The next pass polls the Windows side now (hints said so, or their mode changed).
        self.poll_windows = False
        self.status_written = 0.0
        self.seq = 0
        self.last_full_pass: float | None = None
        self.last_full_pass_seconds: float | None = None
        self.share_ok = True
        self.share_lost_since: float | None = None
        #: The next pass rescans the NFS side too (the share came back or was replaced: NFS
        #: events seen meanwhile were not synced).
        self.rescan_nfs = False
        self.barriers: dict[str, int] = {}
        #: Whether a fault was on at the last look (its end retries every problem at once).
        self.fault_on = False
        #: The requests folder as last listed (mtime, inode): unchanged, it is not listed again.
        self._requests_seen: tuple[int, int] | None = None
        self._sweep: list[tuple[str, int]] = []
        self._sweep_after: str | None = None
        self._sweep_budget = 0.0
        self._sweep_rate = 1.0
        self._sweep_last = time.monotonic()
        self._sweep_resume = 0.0
        self._last_summary = time.monotonic()
        self._summarised = (0, 0, 0, 0)
        #: While seeding (--once): what seed.json says of its progress.
        self.seed: dict[str, Any] | None = None
        self._seed_written = 0.0
        #: Chunks the polls of the current full pass handed over (see Tree.poll's sink).
        self._chunks = 0

    # -- one-shot and loop -------------------------------------------------------------------

    def prepare(self) -> None:
        """Get both sides ready before the first pass.

        Opens the export to every NFS client, removes a killed agent's temp files, learns how
        the Windows side compares names and checks the share is the one the state describes.
        """
        try:
            os.chmod(self.settings.nfs, self.nfs.dir_mode or 0o777)
        except OSError as exc:
            self.log.warning("export root mode not set", extra={"error": str(exc)})
        self._move_old_versions()
        for tree in (self.nfs, self.windows):
            try:
                removed = tree.remove_temp_files()
            except SideUnavailable:
                continue
            if removed:
                self.log.info("removed temp files", extra={"side": tree.name, "count": removed})
            if tree.unreadable:  # the passes report them as problems
                self.log.warning("folders not readable", extra={
                    "side": tree.name, "folders": sorted(display(f) for f in tree.unreadable)[:5]})
        self.state.use_case_insensitive(self.windows.probe_case_insensitive())
        self._requests.mkdir(exist_ok=True)  # inotifywait watches it with the export
        self._share_mounted()

    def close(self) -> None:
        """Release the state database and the event pipe (the agent is done)."""
        self.state.close()
        self.events.close()

    def _move_old_versions(self) -> None:
        """Versions an older agent kept inside the NAS folder move beside it (once)."""
        old = self.settings.windows / FOLDER
        new = self.versions.folder
        try:
            if old.is_dir() and not new.exists():
                new.parent.mkdir(parents=True, exist_ok=True)
                os.rename(old, new)
                self.log.info("versions moved", extra={"from": str(old), "to": str(new)})
        except OSError as exc:
            self.log.warning("versions not moved", extra={"from": str(old), "error": str(exc)})

    def _same_share(self) -> bool:
        """Whether the Windows share's marker is there and is the one the state agreed with."""
        return protocol.share_id(self.settings.windows) == self.state.meta.get("share_id")

    def run_once(self, timeout: float = 600.0) -> bool:
        """Seed: full passes until nothing is left to settle.

        True unless something is left that waits for no problem: a path that cannot be
        synced now (a full export, a locked file) is a problem in status, retried by the
        sidecar with back-off, never a reason for the seed to fail (a restart would only
        meet it again). Its progress is in the state folder's ``seed.json`` as it goes (the
        sidecar's status.json does not overwrite it): phase, files and bytes done of the
        files there are, its problems, at the end its peak RSS.
        """
        self.reconciler.start_seeding()
        self.seed = {"phase": "counting", "files_total": None, "started_at": time.time()}
        self._write_seed()
        with contextlib.suppress(SideUnavailable):  # listings only: the total to show
            self.seed["files_total"] = self.windows.count()
        self.seed["phase"] = "copying"
        self.reconciler.on_progress = self._seed_progress
        self._settle_all(timeout)
        self.seed["phase"] = "done"
        self._write_seed()
        waiting = {p.path for p in self.problems if not p.notice}
        return not (self.reconciler.pending_paths() - waiting)

    def _seed_progress(self) -> None:
        """Rewrite seed.json at most every second while the seed copies."""
        if time.monotonic() - self._seed_written >= 1.0:
            self._write_seed()

    def _write_seed(self) -> None:
        assert self.seed is not None
        self._seed_written = time.monotonic()
        report = self.reconciler.report
        protocol.write_json_atomically(self.settings.state / protocol.SEED_FILE, {
            **self.seed, "files_done": report.copied, "bytes_done": report.copied_bytes,
            "updated_at": time.time(), "errors": self.problems.blocking(),
            "problems": self.problems.as_list(5), "peak_rss_mib": peak_rss_mib()})

    def flush_once(self, timeout: float = 60.0) -> bool:
        """Copy everything pending now (settle ignored); True if nothing is left on one side only."""
        with self.reconciler.flushing_now():
            return self._settle_all(timeout) and not self.problems.unsynced()

    def _settle_all(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self.full_pass(nfs_rescan=True)
        while self.reconciler.pending_paths() and time.monotonic() < deadline \
                and not self.stop_requested:
            if self.reconciler.next_settle_check() == float("inf"):
                break  # what is left waits on problems
            time.sleep(min(self.settings.settle, 0.5) or 0.05)
            self.full_pass(nfs_rescan=True)
        self.write_status()
        return not self.reconciler.pending_paths()

    def run(self) -> None:
        """Sync until SIGTERM/SIGINT, then flush pending changes and return."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request_stop)
        try:
            self.journal.start()  # from its end: what is in it already, the passes see
            # The first passes may copy a whole tree (what they find settles, as with --once):
            # inotify starts after them, so the copies raise no events to sift, and a rescan
            # right after catches what NFS clients did meanwhile.
            self._settle_all(INITIAL_SETTLE)
            self.nfs_events.start()
            self.rescan_nfs = True
            while not self.stop_requested:
                if not self._tick():
                    continue
                nfs_paths = self.reconciler.worth_a_look(NFS, self._drain())
                win_paths, self.hinted_paths = self.hinted_paths | self._hints(), set()
                if nfs_paths or win_paths:
                    self.sync_paths(nfs_paths, win_paths)
                self._retry_due()
                if self.nfs_events.restart_if_due():
                    self.rescan_nfs = True  # what changed while nobody watched
                force = self._handle_requests()
                now = time.monotonic()
                rescan = now >= self.next_rescan or self.rescan_nfs or force
                if now >= self.next_poll or self.poll_windows or rescan:
                    self.full_pass(nfs_rescan=rescan)
                    self.write_status()
                elif now - self.status_written >= protocol.STATUS_EVERY:
                    self.write_status()  # problems and usage change between full passes too
                if self.barriers:  # also between passes: what was pending may be copied since
                    self._answer_barriers()
                self._sweep_step()
                self._summary()
                self.due = self._next_due()
            self._flush()
        finally:
            self.nfs_events.stop()
            self.journal.stop()
            self.state.close()
        self.write_status(stopped=True)

    def _tick(self) -> bool:
        """Wait for NFS events, hints or the next deadline; whether the loop has work now.

        Idle, the agent sleeps in one poll(2) until its next deadline: inotifywait and tail
        (following the journal) wake it when something arrives. A heartbeat is read here: it
        changes nothing else. While inotifywait is down, the requests folder is looked at
        every TICK instead.
        """
        timeout = self.due - time.monotonic()
        if not self.nfs_events.running:
            timeout = min(timeout, TICK)
        if self.events.wait(max(0.0, timeout)):
            if not self.events.empty():
                time.sleep(DEBOUNCE)  # events come in bursts: take a burst at once
                return True
            self.events.clear_wake()
            self.hinted_paths |= self._hints()
            if self.hinted_paths or self.poll_windows:
                return True
            self.due = self._next_due()  # the journal turns stale later now
        if time.monotonic() >= self.due:
            return True
        return not self.nfs_events.running and self._requests_news() is not None

    def _next_due(self) -> float:
        """When the loop's work is due next even if no event, hint or request arrives.

        Never sooner than a DEBOUNCE from now: whatever is left undone, the loop never spins.
        """
        now = time.monotonic()
        if self.barriers or self.poll_windows or self.rescan_nfs:
            return now + TICK
        due = min(self.next_poll, self.next_rescan, self.reconciler.next_settle_check(),
                  self._next_retry(), self.journal.stale_at(), self.journal.restart_due(),
                  self.nfs_events.restart_due(),
                  self._sweep_due(), self.status_written + protocol.STATUS_EVERY,
                  self._last_summary + SUMMARY_EVERY)
        return max(due, now + DEBOUNCE)

    def _hints(self) -> set[str]:
        """Windows paths the host watcher hinted at since the last look (one read if none).

        When the watcher starts or stops writing, the Windows side is polled at once: hints
        may have been missed, and the poll interval changes with the mode.
        """
        hints = self.journal.read()
        if self.journal.fresh != self.hinted:
            self.hinted = self.journal.fresh
            if self.hinted:
                self.log.info("windows changes", extra={
                    "mode": "journal", "detail": "hints from the host watcher; polls are a safety net"})
            else:
                self.log.warning("windows changes", extra={
                    "mode": "polling", "detail": f"the host watcher was silent for {STALE:.0f}s; "
                    "`invoke watch` (or `invoke deploy`) starts it"})
            self.poll_windows = True
        if hints.rescan:
            self.poll_windows = True
        complete = self.reconciler.complete[WINDOWS]
        for win in hints.paths:
            path = self.reconciler.nfs_path(win)
            if win in hints.closed:
                complete.add(path)
            else:
                complete.discard(path)
        return self.reconciler.worth_a_look(WINDOWS, hints.paths) if hints.paths else set()

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.stop_requested = True
        self.reconciler.stop_by(time.monotonic())  # a long pass (a seed) ends at once
        self.events.wake()  # an idle loop may wait seconds for its next deadline

    def _flush(self) -> None:
        """On stop: copy what is pending within the flush budget (a sidecar is killed soon after)."""
        deadline = time.monotonic() + FLUSH_BUDGET
        self.reconciler.stop_by(deadline)
        with self.reconciler.flushing_now():
            pending = self._drain() | self.reconciler.pending_paths()
            if pending:
                self.sync_paths(pending)
            if time.monotonic() < deadline:
                # The export may go away with the pod: catch what events missed (local, cheap).
                try:
                    missed = self._poll(self.nfs)
                    pending = missed.changed.keys() | missed.deleted
                except SideUnavailable:
                    pending = set()
                if pending:
                    self.sync_paths(pending)
        self.log.info("stopped", extra={"pending": len(self.reconciler.pending_paths()),
                                        "unsynced": len(self.problems.unsynced())})

    # -- passes ------------------------------------------------------------------------------

    def full_pass(self, *, nfs_rescan: bool) -> None:
        """Poll the Windows side (and rescan the NFS side if due) and reconcile differences."""
        started = time.monotonic()
        if not self._share_mounted():
            return  # rescan_nfs stays set: the loop looks again a TICK later
        nfs_rescan, self.rescan_nfs = nfs_rescan or self.rescan_nfs, False
        self.poll_windows = False
        try:
            # Big change sets (a seed) are reconciled in chunks as the walks find them.
            scan, reconcile = self.reconciler.full_scan, self.reconciler.reconcile
            with self._caching_folders():
                self._chunks = 0
                windows, nfs = self._both_polls(nfs_rescan)
                items = scan(windows=windows.changed, windows_deleted=windows.deleted,
                             nfs=nfs.changed if nfs else None,
                             nfs_deleted=nfs.deleted if nfs else set(), chunked=self._chunks > 0)
                reconcile(items)
        except (SideUnavailable, OSError) as exc:  # any error left: the pass is tried again
            self._side_unavailable(exc)
            return
        finally:
            self._schedule(nfs_rescan)
        self.share_lost_since = None
        self.seq += 1
        self.last_full_pass = time.time()
        self.last_full_pass_seconds = round(time.monotonic() - started, 3)
        self.log.debug("pass", extra={"changed": len(items), "files": windows.total,
                                      "seconds": self.last_full_pass_seconds,
                                      "nfs_rescan": nfs_rescan})

    @contextlib.contextmanager
    def _caching_folders(self) -> Iterator[None]:
        """Within: folders opened for reading stay open (see Tree.walk_dir).

        Over 9p each folder opened is a round trip to Windows.
        """
        with self.windows.caching_folders(), self.nfs.caching_folders():
            yield

    def _both_polls(self, nfs_rescan: bool) -> tuple[Poll, Poll | None]:
        """Poll Windows (and NFS); what they find in bulk is reconciled as they go."""
        scan, reconcile = self.reconciler.full_scan, self.reconciler.reconcile
        windows = self._poll(self.windows, lambda chunk: reconcile(scan(
            windows=chunk, windows_deleted=set(), nfs=None, nfs_deleted=set(), final=False)))
        nfs = self._poll(self.nfs, lambda chunk: reconcile(scan(
            windows=None, windows_deleted=set(), nfs=chunk, nfs_deleted=set(),
            final=False))) if nfs_rescan else None
        return windows, nfs

    def unsynced(self) -> list[str]:
        """Paths that differ from the agreed state on either side; nothing is changed."""
        nfs, windows = self._poll(self.nfs), self._poll(self.windows)
        paths = nfs.changed.keys() | nfs.deleted | {
            self.reconciler.nfs_path(w) for w in windows.changed.keys() | windows.deleted}
        return sorted(display(p) for p in paths)

    def _poll(self, tree: Tree, sink: Callable[[dict[str, Sig]], None] | None = None) -> Poll:
        """What differs on one side from the agreed state (the time its walks took is kept).

        With ``sink``, differences found are handed to it in chunks as the walk goes.
        """
        started, sunk = time.monotonic(), 0.0

        def timed(chunk: dict[str, Sig]) -> None:
            nonlocal sunk
            began = time.monotonic()
            assert sink is not None
            sink(chunk)
            self._chunks += 1
            sunk += time.monotonic() - began

        agreed = (self.state.win_hash, self.state.win_names) if tree is self.windows else (
            self.state.nfs_hash, self.state.paths)
        found = tree.poll(agreed[0], len(self.state), agreed[1], timed if sink else None)
        self.costs[tree.name].add(time.monotonic() - started - sunk)
        return found

    def _schedule(self, nfs_rescanned: bool) -> None:
        """Plan the next whole-side looks after a pass (see schedule.py)."""
        now = time.monotonic()
        every = self.costs[WINDOWS].every(self.settings.interval, events=self.hinted)
        if not self.hinted and abs(every - self.interval) >= 0.25 * self.interval:
            self.log.info("poll interval", extra={
                "seconds": every, "scan_seconds": round(self.costs[WINDOWS].seconds, 3)})
        self.interval = every
        self.next_poll = now + every
        if nfs_rescanned:
            self.next_rescan = now + self.costs[NFS].every(self.settings.interval,
                                                           events=self.nfs_events.running)

    def sync_paths(self, nfs_paths: set[str], win_paths: set[str] = frozenset()) -> None:
        """Reconcile just these paths (and everything below those that are folders)."""
        if not self._share_mounted():
            return
        try:
            with self._caching_folders():
                items = self.reconciler.observe(nfs_paths, win_paths)
                self.reconciler.reconcile(items)
            if self.reconciler.take_links_changed():
                # Writing through one name of a hard-linked file raises no event for the others.
                missed = self._poll(self.nfs)
                if missed.changed or missed.deleted:
                    self.reconciler.reconcile(self.reconciler.observe(
                        missed.changed.keys() | missed.deleted))
        except (SideUnavailable, OSError) as exc:  # any error left: the pass is tried again
            self._side_unavailable(exc)

    def _retry_due(self) -> None:
        """Try again what is pending and settled, and the problems whose back-off ran out.

        When a fault ends (`invoke fault NAS clear`), every problem is tried at once: what a
        full or read-only export refused need not wait for its back-off.
        """
        fault_on, self.fault_on = self.fault_on, self._fault() is not None
        if fault_on and not self.fault_on:
            self.problems.retry_now({problem.path for problem in self.problems})
        due = set(self.problems.due())
        if self.reconciler.pending_paths() and self.reconciler.next_settle_check() <= time.monotonic():
            due |= self.reconciler.pending_paths()
        if due:
            self.sync_paths(due)

    def _next_retry(self) -> float:
        """The next problem retry, on the monotonic clock."""
        wall = self.problems.next_retry()
        return float("inf") if wall == float("inf") else time.monotonic() + max(0.0, wall - time.time())

    def _share_mounted(self) -> bool:
        """Whether the marker is there, and the share is the one the state describes.

        A share with a new identity (its folder deleted and created again by `invoke setup`)
        starts over: both sides are merged and nothing is deleted.
        """
        share = protocol.share_id(self.settings.windows)
        ok = share is not None
        if ok != self.share_ok:
            level = logging.INFO if ok else logging.ERROR
            self.log.log(level, "share mounted" if ok else
                         "share marker missing: Windows share not mounted; nothing is synced")
            self.rescan_nfs = True
        self.share_ok = ok
        if not ok:
            self._check_share_lost()
            return False
        self.share_lost_since = None
        known = self.state.meta.get("share_id")
        if known != share:
            if known is not None:
                self.log.warning("share replaced", extra={"detail": "new marker identity: both sides "
                                                          "are merged, nothing is deleted"})
                self.state.reset()
                self.reconciler.pending.clear()
            self.state.set_meta("share_id", share)
        return True

    def _check_share_lost(self) -> None:
        try:
            os.stat(self.settings.windows)
            self.share_lost_since = None
        except OSError:
            now = time.monotonic()
            self.share_lost_since = self.share_lost_since or now
            if now - self.share_lost_since > SHARE_LOST_AFTER:
                raise ShareLost(f"{self.settings.windows} unreachable for {SHARE_LOST_AFTER:.0f}s") \
                    from None

    def _side_unavailable(self, exc: Exception) -> None:
        self.log.error("side unavailable", extra={"error": str(exc)})
        if not self.windows.root.exists():
            self._check_share_lost()

    # -- requests ----------------------------------------------------------------------------

    def _handle_requests(self) -> bool:
        """Answer flush and release at once, queue barriers; True if a full pass is wanted now."""
        seen = self._requests_news()
        if seen is None:
            return False
        try:
            waiting = sorted(p for p in self._requests.iterdir() if p.name.endswith(".json")
                             and not p.name.endswith(".result.json"))
        except FileNotFoundError:
            return False
        self._requests_seen = (seen.st_mtime_ns, seen.st_ino)
        gone = set(self.barriers) - {p.name.removesuffix(".json") for p in waiting}
        for request_id in gone:
            del self.barriers[request_id]  # the caller gave up
        wanted = False
        for path in waiting:
            request_id = path.name.removesuffix(".json")
            if request_id in self.barriers:
                continue
            try:
                request = json.loads(path.read_text())
                kind = request.get("kind")
            except (OSError, ValueError, AttributeError):
                continue
            if kind == "flush":
                self._answer(request_id, self._flush_request())
            elif kind == "release":
                released = self.reconciler.release()
                self.full_pass(nfs_rescan=True)
                self._answer(request_id, {"ok": True, "released": released})
            elif kind == "restore":
                self._answer(request_id, self._restore(request))
            elif kind == "barrier":
                self.barriers[request_id] = self.seq + 1
                wanted = True
            else:
                self._answer(request_id, {"ok": False, "error": f"unknown request {kind!r}"})
        return wanted

    def _restore(self, request: dict[str, Any]) -> dict[str, Any]:
        """Put the NFS side's kept versions of a path (a file, or all below a folder) back.

        Each goes into the export as a whole file (a temp file renamed into place; what is
        there now is kept first); the next pass takes it to Windows.
        """
        path, at = str(request.get("path") or ""), request.get("at")
        chosen = self.nfs_versions.under(path, at if isinstance(at, int | float) else None,
                                         folded=False)
        if not chosen:
            return {"ok": False, "error": f"no version of {path!r} is kept on the NFS side"}
        kept = Tree(self.nfs_versions.folder, "versions", temp=self.nfs.temp)
        restored, failed = [], []
        for version in chosen:
            try:
                source = kept.stat(version.version)
                if source is None:
                    raise FileNotFoundError(version.version)
                self.nfs.copy_from(kept, version.version, source, dest=version.path,
                                   dest_expected=self.nfs.stat(version.path), busy_ok=True)
                restored.append({"path": display(version.path), "kept_at": version.stamp})
            except OSError as exc:
                failed.append({"path": display(version.path), "error": str(exc)})
            except (SourceChanged, DestinationChanged) as exc:
                failed.append({"path": display(version.path), "error": type(exc).__name__})
        self.rescan_nfs = True
        return {"ok": not failed, "restored": restored, "failed": failed}

    def _requests_news(self) -> os.stat_result | None:
        """The requests folder's stat if requests may have come or gone since it was listed."""
        try:
            seen = os.stat(self._requests)
        except FileNotFoundError:
            return None
        # Unchanged since listed, and not within a second of that (a request created in the
        # same clock tick as the listing leaves the mtime as it was): nothing came or went.
        if (seen.st_mtime_ns, seen.st_ino) == self._requests_seen \
                and time.time_ns() - seen.st_mtime_ns > 1_000_000_000:
            return None
        return seen

    def _flush_request(self) -> dict[str, Any]:
        with self.reconciler.flushing_now():
            self.sync_paths(self._drain())
            for _ in range(5):
                self.full_pass(nfs_rescan=True)
                if not self.reconciler.pending_paths():
                    break
        unsynced = [p.as_dict() for p in self.problems.unsynced()]
        pending = sorted(display(p) for p in self.reconciler.pending_paths())
        return {"ok": not pending and not unsynced and self.share_ok, "pending": pending,
                "problems": unsynced, "share_mounted": self.share_ok}

    def _answer_barriers(self) -> None:
        """A barrier is answered by a full pass that started after it and left nothing pending.

        Deletions the guard holds are not in step and will not be by waiting: the answer
        says so at once.
        """
        quiet = not self.reconciler.pending_paths() and self.events.empty() and self.share_ok
        held = sorted(display(p) for p in self.reconciler.guard.held)
        answer: dict[str, Any] = {"ok": True, "seq": self.seq} if not held else {
            "ok": False, "pending": held[:50],
            "error": f"{len(held)} deletion(s) held by the mass-deletion guard: `invoke release` "
                     "lets them through, or put the files back"}
        for request_id, needed in list(self.barriers.items()):
            if self.seq >= needed and quiet:
                self._answer(request_id, answer)
                del self.barriers[request_id]

    def _answer(self, request_id: str, answer: dict[str, Any]) -> None:
        protocol.write_json_atomically(self._requests / f"{request_id}.result.json", answer)
        (self._requests / f"{request_id}.json").unlink(missing_ok=True)
        self.write_status()

    # -- background content check ------------------------------------------------------------

    def _sweep_due(self) -> float:
        """When the next sweep step has something to do (a batch to fetch, or budget to hash)."""
        if self.settings.hash_sweep_minutes <= 0 or not self.share_ok:
            return float("inf")
        # At most every STATUS_EVERY on its own: the budget grows meanwhile, and rounds of
        # the loop due anyway (a status, a heartbeat) take a step too.
        wait = -self._sweep_budget / self._sweep_rate if self._sweep else 0.0
        ready = self._sweep_last + max(protocol.STATUS_EVERY, wait)
        return max(ready, self._sweep_resume) if self.hinted else ready

    def _sweep_step(self) -> None:
        """Hash the Windows side at a bounded rate (edits that keep size and mtime are caught).

        Files are taken from the state in path order, a few at a time, so a pass over 100,000
        files holds no list of them. With the host watcher's hints the sweep is a safety net
        like the polls: it then uses at most SAFETY_SHARE of a core, however long a pass takes.
        """
        settings = self.settings
        now = time.monotonic()
        elapsed, self._sweep_last = now - self._sweep_last, now
        if settings.hash_sweep_minutes <= 0 or not self.share_ok or (
                self.hinted and now < self._sweep_resume):
            return
        if not self._sweep:
            if self._sweep_after is None:
                # A new pass: spread it over at least hash_sweep_minutes, never faster than the cap.
                _, total = self.state.content_total(SWEEP_FLOOR)
                self._sweep_rate = min(settings.hash_sweep_mb_per_second * 2**20,
                                       max(1.0, total / (settings.hash_sweep_minutes * 60)))
            self._sweep = self.state.with_content(self._sweep_after, SWEEP_BATCH)
            self._sweep_after = self._sweep[-1][0] if self._sweep else None
            self._sweep.reverse()
            return
        self._sweep_budget = min(self._sweep_budget + elapsed * self._sweep_rate, 8 * 2**20)
        spent = time.process_time()
        while self._sweep and self._sweep_budget > 0:
            path, size = self._sweep.pop()
            self._sweep_budget -= _sweep_cost(size)
            if self.reconciler.verify(path):
                self.log.warning("changed in place", extra={"path": display(path),
                                                            "detail": "same size and mtime"})
                self.sync_paths({path})
        self._sweep_resume = now + (time.process_time() - spent) / SAFETY_SHARE

    # -- NFS-side events ---------------------------------------------------------------------

    def _drain(self) -> set[str]:
        """The NFS paths queued now (a RESCAN among them asks for a rescan of the export)."""
        paths = set(self.events.drain())
        paths.discard(REQUESTS_CHANGED)  # the loop's round looks at the requests anyway
        if RESCAN in paths:
            paths.discard(RESCAN)
            self.rescan_nfs = True
        return paths

    # -- status and logs ---------------------------------------------------------------------

    def _summary(self) -> None:
        """One line a minute at info: what was done (per-pass lines are at debug)."""
        now = time.monotonic()
        if now - self._last_summary < SUMMARY_EVERY:
            return
        self._last_summary = now
        report = self.reconciler.report
        totals = (report.copied, report.deleted, report.renamed, report.conflict_count)
        done = [t - s for t, s in zip(totals, self._summarised, strict=True)]
        self._summarised = totals
        self.log.info("summary", extra={
            "copied": done[0], "deleted": done[1], "renamed": done[2], "conflicts": done[3],
            "files": self.state.files(), "pending": len(self.reconciler.pending_paths()),
            "problems": len(self.problems), "interval": self.interval})

    def _fault(self) -> dict[str, Any] | None:
        """The fault the NFS server's supervisor applied to this NAS (`invoke fault`), if on."""
        applied = faults.read(self.settings.state, faults.APPLIED_FILE)
        return applied.to_json() if applied and applied.active(time.time()) else None

    def write_status(self, *, stopped: bool = False) -> None:
        """Atomically rewrite status.json in the state folder."""
        self.status_written = time.monotonic()
        report = self.reconciler.report
        pending = sorted(self.reconciler.pending_paths())
        status = {
            "pid": os.getpid(),
            "mode": self.settings.mode,
            "updated_at": time.time(),
            "started_at": self.started_at,
            "interval": self.interval,
            "seq": self.seq,
            "last_full_pass": self.last_full_pass,
            "last_full_pass_seconds": self.last_full_pass_seconds,
            "pending": len(pending),
            "pending_paths": [display(p) for p in pending[:50]],
            "files_tracked": self.state.files(),
            "conflicts": report.conflict_count,
            "recent_conflicts": report.conflicts,
            "problems": self.problems.as_list(),
            "errors": self.problems.blocking(),
            "fault": self._fault(),
            "unsynced": len(self.problems.unsynced()),
            "held_deletions": len(self.reconciler.guard.held),
            "share_mounted": self.share_ok,
            "share_id": self.state.meta.get("share_id"),
            "case_insensitive": self.windows.case_insensitive,
            "export": self.nfs.usage(),
            "windows_changes": "journal" if self.hinted else "polling",
            "nfs_changes": "events" if self.nfs_events.running else "rescans",
            "nfs_rescan_every": round(self.costs[NFS].every(
                self.settings.interval, events=self.nfs_events.running), 1),
            "log_level": self.settings.log_level,
            "stopped": stopped,
        }
        status["peak_rss_mib"] = peak_rss_mib()
        protocol.write_json_atomically(self.settings.state / protocol.STATUS_FILE, status)


def peak_rss_mib() -> float | None:
    """The peak resident memory (VmHWM) of the agent process, in MiB (its container has a limit)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _sweep_cost(size: int) -> int:
    """What hashing one file costs, in bytes read."""
    return max(size, SWEEP_FLOOR)
