"""Decide and carry out what each changed path needs, so no version is ever lost.

Each side of a path is compared with the last agreed version (the state): absent, unchanged,
changed (created or modified) or deleted. The pair of those decides the action.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import PurePosixPath

from filesim.sync.state import Entry, State, entry_from
from filesim.sync.tree import DestinationChanged, Poll, SideUnavailable, Sig, SourceChanged, Tree

NFS, WINDOWS = "nfs", "windows"
MODES = ("bidirectional", "to-windows", "to-nfs")
DELETE_WINDOW = 10.0
RACY_SECONDS = 2.0


class Change(Enum):
    """How one side of a path differs from the agreed version."""

    ABSENT = "absent"
    UNCHANGED = "unchanged"
    CHANGED = "changed"
    DELETED = "deleted"


def classify(sig: Sig | None, entry: Entry | None, side: str) -> Change:
    """Compare one side's current signature with the agreed entry."""
    if entry is None:
        return Change.ABSENT if sig is None else Change.CHANGED
    if sig is None:
        return Change.DELETED
    return Change.UNCHANGED if sig == entry.sig(side) else Change.CHANGED


def _sig_of(obs: Observed, side: str) -> Sig:
    sig = obs.nfs if side == NFS else obs.windows
    assert sig is not None
    return sig


def conflict_name(rel: str, side: str, when: float) -> str:
    """``<stem>.conflict-<side>-<UTC yyyymmddThhmmssZ><suffix>`` next to ``rel``."""
    path = PurePosixPath(rel)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return str(path.with_name(f"{path.stem}.conflict-{side}-{stamp}{path.suffix}"))


@dataclass
class Report:
    """What the reconciler has done and could not do; feeds the status file."""

    conflicts: list[dict[str, object]] = field(default_factory=list)
    errors: list[dict[str, object]] = field(default_factory=list)
    conflict_count: int = 0
    error_count: int = 0
    held_deletions: int = 0

    def conflict(self, **details: object) -> None:
        """Count a conflict and keep its details among the last twenty."""
        self.conflict_count += 1
        self.conflicts = [*self.conflicts[-19:], {"at": time.time(), **details}]

    def error(self, **details: object) -> None:
        """Count an error and keep its details among the last twenty."""
        self.error_count += 1
        self.errors = [*self.errors[-19:], {"at": time.time(), **details}]


@dataclass
class Observed:
    """A path's signatures on both sides, taken together."""

    path: str
    nfs: Sig | None
    windows: Sig | None


class Reconciler:
    """Brings paths of the NFS and Windows trees to agreement according to the sync mode."""

    def __init__(self, nfs: Tree, windows: Tree, state: State, *, mode: str, settle: float,
                 max_delete_fraction: float, log: logging.Logger,
                 clock: Callable[[], float] = time.monotonic):
        self.trees = {NFS: nfs, WINDOWS: windows}
        self.state = state
        self.mode = mode
        self.settle = settle
        self.max_delete_fraction = max_delete_fraction
        self.log = log
        self.clock = clock
        self.report = Report()
        self.seeding = False
        # (side, path) -> (signature, first seen, wall time first seen) of a change not yet copied.
        self.unsettled: dict[tuple[str, str], tuple[Sig | None, float, float]] = {}
        self._held: set[str] = set()
        self._recent_deletes: list[tuple[float, int]] = []
        # Windows mtimes are whole seconds: an edit within the same second keeping the size
        # leaves the signature unchanged. Entries recorded that close to their mtime are
        # "racy" (as in git's index) and verified by content until a later second has passed.
        now = time.time()
        self.racy: set[str] = {p for p, e in state.entries.items()
                               if not e.is_dir and e.windows_mtime_ns / 1e9 > now - RACY_SECONDS}

    # -- observing ---------------------------------------------------------------------------

    def observe(self, paths: Iterable[str]) -> list[Observed]:
        """Stat ``paths`` on both sides, expanding directories to everything below them."""
        todo = [(p, True) for p in paths]
        seen: set[str] = set()
        result = []
        while todo:
            path, expand = todo.pop()
            if path in seen or not path:
                continue
            seen.add(path)
            nfs, windows = self.trees[NFS].stat(path), self.trees[WINDOWS].stat(path)
            entry = self.state.get(path)
            result.append(Observed(path, nfs, windows))
            if expand and any(x is not None and x.is_dir for x in (nfs, windows, entry)):
                for side, sig in ((NFS, nfs), (WINDOWS, windows)):
                    if sig is not None and sig.is_dir:
                        todo.extend((child, False) for child in self.trees[side].scan(path))
                todo.extend((child, False) for child in self.state.under(path))
        return result

    def full_scan(self, *, windows: Poll, nfs: Poll | None) -> list[Observed]:
        """Observed pairs for every path that differs from the state on either side.

        Without an NFS poll, the NFS side is stat-ed only for the paths Windows changed.
        """
        agreed = self.state.sigs
        self._check_racy(windows)
        paths = windows.changed.keys() | windows.deleted
        if nfs is not None:
            paths |= nfs.changed.keys() | nfs.deleted

        def current(poll: Poll, side: str, path: str) -> Sig | None:
            if path in poll.changed:
                return poll.changed[path]
            return None if path in poll.deleted else agreed[side].get(path)

        nfs_tree = self.trees[NFS]
        return [Observed(path, current(nfs, NFS, path) if nfs is not None else nfs_tree.stat(path),
                         current(windows, WINDOWS, path)) for path in paths]

    def _check_racy(self, windows: Poll) -> None:
        """Mark racy entries whose Windows content no longer matches as changed."""
        now = time.time()
        for path in list(self.racy):
            entry = self.state.get(path)
            if (entry is None or path in windows.changed or path in windows.deleted
                    or not entry.sha256):
                self.racy.discard(path)
                continue
            if self.trees[WINDOWS].hash(path) != entry.sha256:
                self.state.put(path, dataclasses.replace(entry, windows_mtime_ns=-1))
                windows.changed[path] = self.trees[WINDOWS].stat(path) or entry.sig(WINDOWS)
                self.racy.discard(path)
            elif now - entry.windows_mtime_ns / 1e9 > RACY_SECONDS:
                self.racy.discard(path)

    def _agree(self, path: str, entry: Entry) -> None:
        """Record that both sides hold the same version of ``path``.

        A racy entry gets its content hash (read from the local NFS side): the racy check
        compares the Windows file against it.
        """
        if not entry.is_dir and entry.windows_mtime_ns / 1e9 > time.time() - RACY_SECONDS:
            self.racy.add(path)
            if entry.sha256 is None:
                entry = dataclasses.replace(entry, sha256=self.trees[NFS].hash(path))
        self.state.put(path, entry)

    # -- deciding and acting -----------------------------------------------------------------

    def reconcile(self, observed: list[Observed]) -> None:
        """Act on every observed path: creations parents-first, deletions children-first."""
        deletions: list[tuple[Observed, str]] = []
        for obs in sorted(observed, key=lambda o: o.path):
            try:
                action = self._decide(obs)
                if action and action[0] == "delete":
                    deletions.append((obs, action[1]))
                elif action:
                    self._run(obs, action)
                    self._forget_unsettled(obs.path)
            except (SourceChanged, DestinationChanged) as exc:
                self.log.info("retry", extra={"path": obs.path, "why": type(exc).__name__})
                self.unsettled.pop((NFS, obs.path), None)
                self.unsettled.pop((WINDOWS, obs.path), None)
                self._mark_unsettled(obs.path)
            except SideUnavailable:
                raise
            except OSError as exc:
                self.report.error(path=obs.path, error=str(exc))
                self.log.error("error", extra={"path": obs.path, "error": str(exc)})
        self._delete(deletions)
        self.state.commit()

    def _mark_unsettled(self, path: str) -> None:
        for side in (NFS, WINDOWS):
            self.unsettled.setdefault((side, path), (None, self.clock(), time.time()))

    def _settled(self, side: str, path: str, sig: Sig) -> bool:
        """Whether a changed file has kept ``sig`` for the settle time (directories always)."""
        if sig.is_dir or self.settle == 0:
            return True
        now = self.clock()
        key = (side, path)
        seen = self.unsettled.get(key)
        if seen is None or seen[0] != sig:
            wall = seen[2] if seen else time.time()
            self.unsettled[key] = (sig, now, wall)
            # A local file untouched for the settle time is settled already (NFS mtimes are exact).
            return side == NFS and time.time() - sig.mtime_ns / 1e9 >= self.settle
        return now - seen[1] >= self.settle

    def _decide(self, obs: Observed) -> tuple[str, ...] | None:
        entry = self.state.get(obs.path)
        n = classify(obs.nfs, entry, NFS)
        w = classify(obs.windows, entry, WINDOWS)
        if n in (Change.UNCHANGED, Change.ABSENT) and w in (Change.UNCHANGED, Change.ABSENT):
            self._forget_unsettled(obs.path)
            return None
        for side, change, sig in ((NFS, n, obs.nfs), (WINDOWS, w, obs.windows)):
            if change is Change.CHANGED and not self._settled(side, obs.path, sig):
                return None
        decide = {"bidirectional": self._decide_bidirectional, "to-nfs": self._decide_to_nfs,
                  "to-windows": self._decide_to_windows}[self.mode]
        return decide(obs, entry, n, w)

    def _forget_unsettled(self, path: str) -> None:
        self.unsettled.pop((NFS, path), None)
        self.unsettled.pop((WINDOWS, path), None)

    def _decide_bidirectional(self, obs: Observed, entry: Entry | None, n: Change, w: Change):
        if n is Change.DELETED and w is Change.DELETED:
            return ("forget",)
        if n is Change.CHANGED and w is Change.CHANGED:
            return ("merge",)
        if n is Change.CHANGED:
            return ("copy", NFS, WINDOWS, "edit-wins" if w is Change.DELETED else "")
        if w is Change.CHANGED:
            return ("copy", WINDOWS, NFS, "edit-wins" if n is Change.DELETED else "")
        return ("delete", WINDOWS if n is Change.DELETED else NFS)

    def _decide_to_nfs(self, obs: Observed, entry: Entry | None, n: Change, w: Change):
        if obs.windows is None:
            return ("forget",) if obs.nfs is None else ("delete", NFS)
        return ("copy", WINDOWS, NFS, "")

    def _decide_to_windows(self, obs: Observed, entry: Entry | None, n: Change, w: Change):
        if obs.nfs is None:
            if obs.windows is None:
                return ("forget",)
            if self.seeding and entry is None:
                return ("copy", WINDOWS, NFS, "")
            owned = entry is not None and entry.windows_by_agent and w is Change.UNCHANGED
            return ("delete", WINDOWS) if owned else ("forget",)
        if w is Change.CHANGED and n is not Change.CHANGED:
            return ("disown",) if obs.nfs is not None and entry else None
        writable = obs.windows is None or (
            entry is not None and entry.windows_by_agent and w is Change.UNCHANGED)
        if writable or (obs.windows.is_dir and obs.nfs.is_dir):
            return ("copy", NFS, WINDOWS, "")
        return ("keep-both",)

    def _run(self, obs: Observed, action: tuple[str, ...]) -> None:
        kind = action[0]
        if kind == "forget":
            self.state.drop(obs.path)
            self._forget_unsettled(obs.path)
        elif kind == "copy":
            _, source, dest, note = action
            self._copy(obs, source, dest)
            if note:
                self.report.conflict(path=obs.path, kind="delete-vs-edit", kept=source)
                self.log.warning("edit wins over delete", extra={"path": obs.path, "kept": source})
        elif kind == "merge":
            self._merge(obs)
        elif kind == "disown":
            entry = self.state.get(obs.path)
            assert entry is not None and obs.windows is not None and obs.nfs is not None
            self._agree(obs.path, entry_from(obs.nfs, obs.windows, None, by_agent=False))
        elif kind == "keep-both":
            self._save_nfs_version_beside(obs)

    def _copy(self, obs: Observed, source: str, dest: str, *, by_agent: bool | None = None) -> None:
        src_sig = obs.nfs if source == NFS else obs.windows
        dst_sig = obs.windows if source == NFS else obs.nfs
        assert src_sig is not None
        started = self.clock()
        tree = self.trees[dest]
        if src_sig.is_dir:
            if dst_sig is not None and not dst_sig.is_dir:
                raise DestinationChanged(obs.path)
            new = tree.mkdir(obs.path)
        else:
            if dst_sig is not None and dst_sig.is_dir:
                self.report.error(path=obs.path, error="a file on one side is a folder on the other")
                return
            new = tree.copy_from(self.trees[source], obs.path, src_sig, dest_expected=dst_sig)
        nfs, windows = (src_sig, new) if source == NFS else (new, src_sig)
        agent_wrote_windows = dest == WINDOWS if by_agent is None else by_agent
        self._agree(obs.path, entry_from(nfs, windows, None, by_agent=agent_wrote_windows))
        self._log_action(obs.path, source, dest, src_sig, started)

    def _merge(self, obs: Observed) -> None:
        """Both sides changed: equal content agrees, else both versions survive on both sides."""
        nfs, windows = obs.nfs, obs.windows
        assert nfs is not None and windows is not None
        if nfs.is_dir and windows.is_dir:
            self._agree(obs.path, entry_from(nfs, windows, None, by_agent=False))
            return
        if not nfs.is_dir and not windows.is_dir and nfs.size == windows.size:
            digest = self.trees[NFS].hash(obs.path)
            if digest == self.trees[WINDOWS].hash(obs.path):
                self._agree(obs.path, entry_from(nfs, windows, digest, by_agent=False))
                self._forget_unsettled(obs.path)
                return
        if nfs.is_dir or windows.is_dir:
            self.report.error(path=obs.path, error="a file on one side is a folder on the other")
            return
        winner, loser = self._latest_change(obs)
        when = time.time()
        saved = conflict_name(obs.path, loser, when)
        loser_tree, winner_tree = self.trees[loser], self.trees[winner]
        loser_sig = obs.nfs if loser == NFS else obs.windows
        loser_tree.rename(obs.path, saved)
        copy_sig = winner_tree.copy_from(loser_tree, saved, loser_sig, dest_expected=None)
        saved_obs = Observed(saved, *((loser_sig, copy_sig) if loser == NFS else (copy_sig, loser_sig)))
        self._agree(saved, entry_from(saved_obs.nfs, saved_obs.windows, None,
                                         by_agent=winner == WINDOWS))
        winner_obs = Observed(obs.path, obs.nfs if winner == NFS else None,
                              obs.windows if winner == WINDOWS else None)
        self._copy(winner_obs, winner, loser)
        self.report.conflict(path=obs.path, kind="both-changed", kept=winner, saved_as=saved)
        self.log.warning("conflict", extra={"path": obs.path, "kept": winner, "saved_as": saved})

    def _latest_change(self, obs: Observed) -> tuple[str, str]:
        """(winner, loser): the side whose change the agent saw last keeps the name.

        Changes first seen within a second of each other (e.g. both made while the agent was
        down) are ordered by mtime; Windows wins a tie.
        """
        n = self.unsettled.get((NFS, obs.path), (None, 0.0, 0.0))[2]
        w = self.unsettled.get((WINDOWS, obs.path), (None, 0.0, 0.0))[2]
        if abs(n - w) <= 1.0:
            assert obs.nfs is not None and obs.windows is not None
            n, w = obs.nfs.mtime_ns // 10**9, obs.windows.mtime_ns // 10**9
        return (NFS, WINDOWS) if n > w else (WINDOWS, NFS)

    def _save_nfs_version_beside(self, obs: Observed) -> None:
        """to-windows: a tester's Windows file is never replaced; the NFS version goes beside it."""
        assert obs.nfs is not None
        saved = conflict_name(obs.path, NFS, time.time())
        self.trees[WINDOWS].copy_from(self.trees[NFS], obs.path, obs.nfs, dest=saved,
                                               dest_expected=None)
        assert obs.windows is not None
        self._agree(obs.path, entry_from(obs.nfs, obs.windows, None, by_agent=False))
        self.report.conflict(path=obs.path, kind="tester-file-kept", saved_as=saved)
        self.log.warning("tester file kept", extra={"path": obs.path, "saved_as": saved})

    def _delete(self, deletions: list[tuple[Observed, str]]) -> None:
        """Propagate deletions unless a guard holds them all (emptied root, mass deletion).

        Deletions propagated in the last ``DELETE_WINDOW`` seconds count too, so a mass
        deletion arriving in several batches of events is still caught.
        """
        now = self.clock()
        self._recent_deletes = [(t, n) for t, n in self._recent_deletes if now - t < DELETE_WINDOW]
        if not deletions:
            self.report.held_deletions = len(self._held)
            return
        files = sum(1 for obs, dest in deletions if not _sig_of(obs, dest).is_dir)
        recent = sum(n for _, n in self._recent_deletes)
        tracked = self.state.files()
        reason = None
        for side in sorted({self._other(dest) for _, dest in deletions}):
            if tracked and self.trees[side].is_empty():
                reason = f"the {side} side is empty"
        if reason is None and files and files + recent > self.max_delete_fraction * (tracked + recent):
            reason = f"{files + recent} of {tracked + recent} files would be deleted"
        if reason:
            held = {obs.path for obs, _ in deletions}
            if not held <= self._held:
                self.log.error("deletions held", extra={"reason": reason, "count": len(held)})
                self.report.error(error=f"deletions held: {reason}", count=len(held))
            self._held = held
            self.report.held_deletions = len(held)
            return
        self._held = set()
        self.report.held_deletions = 0
        done = 0
        for obs, dest in sorted(deletions, key=lambda d: d[0].path, reverse=True):
            started = self.clock()
            expected = _sig_of(obs, dest)
            try:
                if self.trees[dest].remove(obs.path, expected):
                    self.state.drop(obs.path)
                    done += not expected.is_dir
                    self._log_action(obs.path, self._other(dest), dest, None, started, "delete")
            except DestinationChanged:
                self._mark_unsettled(obs.path)
            except OSError as exc:
                self.report.error(path=obs.path, error=str(exc))
        self._recent_deletes.append((now, done))

    @staticmethod
    def _other(side: str) -> str:
        return WINDOWS if side == NFS else NFS

    def _log_action(self, path: str, source: str, dest: str, sig: Sig | None, started: float,
                    action: str = "copy") -> None:
        self.log.info(action, extra={
            "direction": f"{source}->{dest}", "path": path,
            "bytes": 0 if sig is None or sig.is_dir else sig.size,
            "ms": round((self.clock() - started) * 1000, 1),
        })
