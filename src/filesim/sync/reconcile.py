"""The reconciler: observe both sides of a batch of paths, plan each, apply, state last.

Each side of a path is compared with the last agreed version (the state): absent, unchanged,
changed (created, modified or of another type) or deleted, and plan.decide() gives the action.
The parts live in modules of their own, mixed into Reconciler: observe.py (what changed,
looked up by name), renames.py (renames carried out as renames), winpaths.py (Windows names),
settle.py (changes wait until stable, deletions until seen twice) and apply.py (the
crash-safe steps). This module is the loop and the facts plan.decide() needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from filesim.sync.apply import Applier
from filesim.sync.guard import DeletionGuard
from filesim.sync.items import (
    BULK,
    RACY_SECONDS,
    Item,
    Pending,
    Report,
    Settings,
    ancestors,
    other_side,
)
from filesim.sync.observe import Observer
from filesim.sync.plan import NFS, WINDOWS, Action, Change, Do, Facts, classify, decide
from filesim.sync.problems import Problems
from filesim.sync.renames import Renames
from filesim.sync.settle import Settling
from filesim.sync.state import State, agreed_entry
from filesim.sync.tree import Kind, Tree
from filesim.sync.winpaths import WindowsPaths


class Reconciler(Observer, Renames, WindowsPaths, Settling, Applier):
    """Brings paths of the NFS and Windows trees to agreement according to the sync mode."""

    def __init__(self, nfs: Tree, windows: Tree, state: State, settings: Settings,
                 problems: Problems, log: logging.Logger,
                 clock: Callable[[], float] = time.monotonic,
                 share_ok: Callable[[], bool] = lambda: True):
        self.trees = {NFS: nfs, WINDOWS: windows}
        #: Whether the Windows share is still the one agreed with (its marker): looked at
        #: right before and while deletions from Windows go through.
        self.share_ok = share_ok
        self.state = state
        self.settings = settings
        self.problems = problems
        self.log = log
        self.clock = clock
        self.report = Report()
        self.seeding = False
        self.flushing = False
        self.settle = settings.settle
        self.pending: dict[str, Pending] = {}
        #: Per side, paths whose writer is done (closed after writing, or renamed into place):
        #: no settle wait. Fed by the NFS events and the host watcher's hints.
        self.complete: dict[str, set[str]] = {NFS: set(), WINDOWS: set()}
        #: NFS paths whose Windows side changed though its signature did not (racy, sweep).
        self.forced: set[str] = set()
        self.guard = DeletionGuard(settings.max_delete_fraction, settings.max_delete_rate)
        #: Windows folder listings of one batch, by case key (for case-collision checks).
        self._listings: dict[str, dict[str, str]] = {}
        #: (side, folder) the last observation was refused to list: reported after the batch.
        self._unreadable: set[tuple[str, str]] = set()
        #: Paths a conflict renamed aside on one side in this batch (see Applier._moved_aside).
        self._aside: set[str] = set()
        #: Agreed paths the last observation pulled in as the sources of renames.
        self._sources: set[str] = set()
        #: In a batch of more than BULK items, (action, direction) → [count, bytes, examples].
        self._bulk: dict[tuple[str, str], list] | None = None
        #: Called every few dozen items of a long batch (the agent shows a seed's progress).
        self.on_progress: Callable[[], None] = lambda: None
        #: A file with other names (hard links) was copied: those names changed too.
        self.links_changed = False
        self._stop_at = float("inf")
        # Windows mtimes are whole seconds: an edit within the same second keeping the size
        # leaves the signature unchanged. Entries recorded that close to their mtime are
        # "racy" (as in git's index) and verified by content until a later second has passed.
        now = time.time()
        self.racy: set[str] = set(state.recent_on_windows(int((now - RACY_SECONDS) * 1e9),
                                                          int((now + RACY_SECONDS) * 1e9)))
        #: Path → when the agent last wrote its Windows copy (self.clock()).
        self.echoes: dict[str, float] = {}

    # -- modes -------------------------------------------------------------------------------

    def start_seeding(self) -> None:
        """The seed: a file only on Windows goes to NFS even on an output NAS (never agreed yet)."""
        self.seeding = True

    @contextmanager
    def flushing_now(self) -> Iterator[None]:
        """Within: copy what is pending at once (no settle wait) and retry problems now."""
        saved = self.flushing, self.settle
        self.flushing, self.settle = True, 0.0
        try:
            yield
        finally:
            self.flushing, self.settle = saved

    def stop_by(self, deadline: float) -> None:
        """Leave batches unfinished after ``deadline`` (on the reconciler's clock): the agent stops."""
        self._stop_at = deadline

    def take_links_changed(self) -> bool:
        """Whether a hard-linked file was copied since the last call (its other names changed)."""
        changed, self.links_changed = self.links_changed, False
        return changed

    # -- deciding ----------------------------------------------------------------------------

    def reconcile(self, items: list[Item]) -> None:
        """Act on every item.

        Renames first, then creations parents-first, deletions children-first, and type
        replacements that needed those deletions last.
        """
        # A rename's source may wait on a problem (a held deletion): the rename resolves it.
        sources, self._sources = self._sources, set()
        items = [i for i in items if self.flushing or not self.problems.waiting(i.path)
                 or any(i.path == s or i.path.startswith(s + "/") for s in sources)]
        for tree in self.trees.values():
            tree.begin_batch()
        with self.state.batch():
            try:
                self._reconcile(items)
            finally:
                self._log_bulk()
        self._unreadable_problems()
        self.problems.flush_log()

    def _reconcile(self, items: list[Item]) -> None:
        # A seed of 100,000 files logs a line per batch, not one per file (at info).
        self._bulk = {} if len(items) > BULK else None
        self._aside = set()
        try:
            items = self._renames(items)
            deletions: list[tuple[Item, str]] = []
            after: list[tuple[Item, Action]] = []
            for index, item in enumerate(items):
                if index % 64 == 0 and index:
                    self.on_progress()
                if index % 64 == 0 and self.clock() > self._stop_at:
                    # Stopping: the rest (and what waited for it) stays pending, so the final
                    # status says so and nothing is taken as synced that was not.
                    for rest in [*items[index:], *(i for i, _ in deletions), *(i for i, _ in after)]:
                        self._touch_pending(rest.path)
                    return
                action = None
                if self._aside and any(a in self._aside for a in ancestors(item.path)):
                    self._touch_pending(item.path)  # seen below what a conflict moved aside
                    continue
                try:
                    action = self._decide(item)
                    if action is None:
                        continue
                    if action.do is Do.DELETE:
                        deletions.append((item, action.dest))
                    elif action.do is Do.COPY and self._replaces_folder(item, action):
                        after.append((item, action))
                    else:
                        self._run(item, action)
                except Exception as exc:
                    self._failed(item, exc, action)
            self._delete(deletions)
            for item, action in after:
                if self._deletion_waiting_below(item.path):
                    self._touch_pending(item.path)  # the folder's files go first, seen gone twice
                    continue
                try:
                    self._run(item, action)
                except Exception as exc:
                    self._failed(item, exc, action)
        finally:
            self.state.commit()

    def _decide(self, item: Item) -> Action | None:
        entry = self.state.get(item.path)
        for side in (NFS, WINDOWS):
            sig = item.sig(side)
            if sig is not None and sig.kind in (Kind.SYMLINK, Kind.OTHER):
                return Action(Do.NOT_SYNCED, side, note="a symlink" if sig.kind == Kind.SYMLINK
                              else "a special file (socket, fifo or device)")
        if not item.win:
            reason = self.name_problem(item.path)
            return Action(Do.NOT_SYNCED, NFS, note=reason or "no Windows name")
        n = classify(item.nfs, entry, NFS)
        w = classify(item.windows, entry, WINDOWS)
        if w is Change.UNCHANGED and item.path in self.forced:
            w = Change.CHANGED
        if n in (Change.UNCHANGED, Change.ABSENT) and w in (Change.UNCHANGED, Change.ABSENT):
            self.pending.pop(item.path, None)
            self.problems.resolve(item.path)
            self.guard.forget(item.path)  # a held deletion whose file came back
            if entry is not None and item.nfs is not None and item.windows is not None and (
                    item.nfs != entry.nfs_sig() or item.win != entry.win):
                self._agree(item.path, agreed_entry(item.win, item.nfs, item.windows, entry.sha,
                                                    by_agent=entry.by_agent))
            return None
        if n is Change.CHANGED and item.nfs.is_file:
            reason = self.name_problem(item.path)
            if reason is not None and item.windows is None:
                return Action(Do.NOT_SYNCED, NFS, note=reason)
        busy = False
        for side, change in ((NFS, n), (WINDOWS, w)):
            if change is Change.CHANGED:
                settled = self._settled(side, item.path, item.sig(side))
                if settled is False:
                    return None
                busy |= settled == "busy"
        action = decide(self.settings.mode, Facts(
            n, w, agreed=entry is not None,
            nfs_is_dir=item.nfs is not None and item.nfs.is_dir,
            windows_is_dir=item.windows is not None and item.windows.is_dir,
            by_agent=entry is not None and entry.by_agent, seeding=self.seeding))
        # One observation never destroys: a deletion is acted on once a second look, by name
        # and at least the settle time after the first, finds the path gone too.
        if action is not None and action.do is Do.DELETE and self._settled(
                other_side(action.dest), item.path, None) is not True:
            return None
        if action is not None and busy:
            action = Action(action.do, action.source, action.dest, action.note or "busy")
        return action

    def _replaces_folder(self, item: Item, action: Action) -> bool:
        """A file replaces a folder: its children must go first (deletions run later)."""
        dest = item.sig(action.dest)
        source = item.sig(action.source)
        return dest is not None and dest.is_dir and source is not None and not source.is_dir
