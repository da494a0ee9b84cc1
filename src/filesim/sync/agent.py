"""The agent's loop: NFS-side events, Windows-side polling, settle retries, status, signals."""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filesim.sync.reconcile import NFS, WINDOWS, Reconciler
from filesim.sync.state import State
from filesim.sync.tree import SideUnavailable, Tree, ignored

DEBOUNCE = 0.05
NFS_RESCAN_EVERY = 30.0
FLUSH_BUDGET = 1.5
STATUS_FILE = "status.json"


@dataclass(frozen=True)
class Settings:
    """The agent's command-line settings."""

    nfs: Path
    windows: Path
    state: Path
    mode: str
    interval: float = 2.0
    settle: float = 0.5
    max_delete_fraction: float = 0.5


class Agent:
    """Keeps the NFS export and the Windows share in agreement until told to stop."""

    def __init__(self, settings: Settings, log: logging.Logger):
        self.settings = settings
        self.log = log
        # NFS clients act as any uid, root squashed to nobody: what the agent writes into a
        # writable export stays writable for all of them.
        writable = settings.mode != "to-nfs"
        self.nfs = Tree(settings.nfs, NFS, file_mode=0o666 if writable else 0o644,
                        dir_mode=0o777 if writable else 0o755)
        self.windows = Tree(settings.windows, WINDOWS)
        self.state = State(settings.state)
        self.reconciler = Reconciler(self.nfs, self.windows, self.state, mode=settings.mode,
                                     settle=settings.settle,
                                     max_delete_fraction=settings.max_delete_fraction, log=log)
        self.events: queue.Queue[str | None] = queue.Queue()
        self.stopping = threading.Event()
        self.started_at = time.time()
        self.interval = settings.interval
        self.last_full_pass: float | None = None
        self.last_full_pass_seconds: float | None = None
        self.share_ok = True

    # -- one-shot and loop -------------------------------------------------------------------

    def prepare(self) -> None:
        """Open the export's root to every NFS client; remove temp files a killed agent left."""
        try:
            os.chmod(self.settings.nfs, self.nfs.dir_mode or 0o777)
        except OSError as exc:
            self.log.warning("export root mode not set", extra={"error": str(exc)})
        for tree in (self.nfs, self.windows):
            removed = tree.remove_temp_files()
            if removed:
                self.log.info("removed temp files", extra={"side": tree.name, "count": removed})

    def run_once(self, timeout: float = 600.0) -> bool:
        """Full reconciliations until nothing is left to settle; True if fully in agreement."""
        self.reconciler.seeding = True
        deadline = time.monotonic() + timeout
        self.full_pass(nfs_rescan=True)
        while self.reconciler.unsettled and time.monotonic() < deadline:
            time.sleep(min(self.settings.settle, 0.5) or 0.05)
            self.full_pass(nfs_rescan=True)
        self.write_status()
        return not self.reconciler.unsettled

    def run(self) -> None:
        """Sync until SIGTERM/SIGINT, then flush pending changes and return."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request_stop)
        observer = self._start_watcher()
        try:
            self.full_pass(nfs_rescan=True)
            next_poll = time.monotonic() + self.interval
            next_rescan = time.monotonic() + NFS_RESCAN_EVERY
            while not self.stopping.is_set():
                dirty = self._wait_for_events(until=min(next_poll, self._next_settle_check()))
                if dirty:
                    self.sync_paths(dirty)
                if self.reconciler.unsettled and self._next_settle_check() <= time.monotonic():
                    self.sync_paths({p for _, p in self.reconciler.unsettled})
                now = time.monotonic()
                if now >= next_poll:
                    rescan = now >= next_rescan
                    self.full_pass(nfs_rescan=rescan)
                    if rescan:
                        next_rescan = now + NFS_RESCAN_EVERY
                    next_poll = time.monotonic() + self.interval
                    self.write_status()
            self._flush()
        finally:
            observer.stop()
            self.state.close()
        self.write_status(stopped=True)

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.stopping.set()
        self.events.put(None)

    def _flush(self) -> None:
        """On stop: copy what is pending within the flush budget (a sidecar is killed soon after)."""
        deadline = time.monotonic() + FLUSH_BUDGET
        self.reconciler.settle = 0.0
        pending = self._drain() | {p for _, p in self.reconciler.unsettled}
        if pending:
            self.sync_paths(pending)
        if time.monotonic() < deadline:
            # The export goes away with the pod: catch what events may have missed (local, cheap).
            try:
                missed = self.nfs.poll(self.state.sigs[NFS])
                pending = missed.changed.keys() | missed.deleted
            except SideUnavailable:
                pending = set()
            if pending:
                self.sync_paths(pending)
        self.log.info("stopped", extra={"unsettled": len(self.reconciler.unsettled)})

    # -- passes ------------------------------------------------------------------------------

    def full_pass(self, *, nfs_rescan: bool) -> None:
        """Poll the Windows side (and rescan the NFS side if due) and reconcile differences."""
        started = time.monotonic()
        if not self._share_mounted():
            return
        try:
            agreed = self.state.sigs
            windows = self.windows.poll(agreed[WINDOWS])
            nfs = self.nfs.poll(agreed[NFS]) if nfs_rescan else None
            observed = self.reconciler.full_scan(windows=windows, nfs=nfs)
            scan_seconds = time.monotonic() - started
            self.reconciler.reconcile(observed)
        except SideUnavailable as exc:
            self._side_unavailable(exc)
            return
        self.last_full_pass = time.time()
        self.last_full_pass_seconds = round(time.monotonic() - started, 3)
        self._stretch_interval(scan_seconds)
        self.log.info("pass", extra={"changed": len(observed), "files": windows.total,
                                     "seconds": self.last_full_pass_seconds,
                                     "nfs_rescan": nfs_rescan})

    def sync_paths(self, paths: set[str]) -> None:
        """Reconcile just these paths (and everything below those that are folders)."""
        if not self._share_mounted():
            return
        try:
            self.reconciler.reconcile(self.reconciler.observe(paths))
        except SideUnavailable as exc:
            self._side_unavailable(exc)

    def _share_mounted(self) -> bool:
        ok = self.windows.has_marker()
        if ok != self.share_ok:
            level = logging.INFO if ok else logging.ERROR
            self.log.log(level, "share mounted" if ok else
                         "share marker missing: Windows share not mounted; nothing is synced")
        self.share_ok = ok
        return ok

    def _side_unavailable(self, exc: SideUnavailable) -> None:
        self.reconciler.report.error(error=str(exc))
        self.log.error("side unavailable", extra={"error": str(exc)})

    def _stretch_interval(self, scan_seconds: float) -> None:
        """Keep polling cheap: a scan may take at most a quarter of the interval."""
        wanted = max(self.settings.interval, math.ceil(scan_seconds * 40) / 10)
        if abs(wanted - self.interval) > 0.05 * self.interval:
            self.log.info("poll interval", extra={"seconds": wanted, "scan_seconds":
                                                  round(scan_seconds, 3)})
            self.interval = wanted

    def _next_settle_check(self) -> float:
        settle = self.reconciler.settle
        starts = [seen for _, seen, _ in self.reconciler.unsettled.values()]
        return min(starts) + settle if starts else float("inf")

    # -- NFS-side events ---------------------------------------------------------------------

    def _start_watcher(self) -> Any:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        root = str(self.settings.nfs)
        events = self.events

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                for path in (event.src_path, getattr(event, "dest_path", "")):
                    if path:
                        rel = os.path.relpath(os.fsdecode(path), root)
                        if rel != "." and not ignored(os.path.basename(rel)):
                            events.put(rel)

        observer = Observer()
        observer.schedule(Handler(), root, recursive=True)
        observer.start()
        return observer

    def _wait_for_events(self, until: float) -> set[str]:
        timeout = max(0.0, until - time.monotonic())
        try:
            first = self.events.get(timeout=timeout)
        except queue.Empty:
            return set()
        time.sleep(DEBOUNCE)
        return ({first} if first else set()) | self._drain()

    def _drain(self) -> set[str]:
        paths = set()
        while True:
            try:
                path = self.events.get_nowait()
            except queue.Empty:
                return paths
            if path:
                paths.add(path)

    # -- status ------------------------------------------------------------------------------

    def write_status(self, *, stopped: bool = False) -> None:
        """Atomically rewrite status.json in the state folder."""
        report = self.reconciler.report
        status = {
            "pid": os.getpid(),
            "mode": self.settings.mode,
            "updated_at": time.time(),
            "started_at": self.started_at,
            "interval": self.interval,
            "last_full_pass": self.last_full_pass,
            "last_full_pass_seconds": self.last_full_pass_seconds,
            "pending": len({p for _, p in self.reconciler.unsettled}),
            "files_tracked": self.state.files(),
            "conflicts": report.conflict_count,
            "recent_conflicts": report.conflicts,
            "errors": report.error_count,
            "recent_errors": report.errors,
            "held_deletions": report.held_deletions,
            "share_mounted": self.share_ok,
            "export": self.nfs.usage(),
            "stopped": stopped,
        }
        write_json_atomically(self.settings.state / STATUS_FILE, status)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temp file beside ``path`` and rename it into place."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(temp, path)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The agent's status.json, or None if there is none (yet)."""
    try:
        return json.loads((state_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def health(status: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether the agent that wrote ``status`` is alive and syncing, with the reason."""
    if status is None:
        return False, "no status yet"
    age = time.time() - status["updated_at"]
    if status.get("stopped"):
        return False, "agent stopped"
    if age > 3 * status["interval"] + 10:
        return False, f"status is {age:.0f}s old"
    if not status["share_mounted"]:
        return False, "Windows share not mounted (marker .filesim-share missing)"
    if status["last_full_pass"] is None:
        return False, "no full pass yet"
    return True, "ok"
