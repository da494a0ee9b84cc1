"""Decide and carry out what each changed path needs, so no version is ever lost.

Each side of a path is compared with the last agreed version (the state): absent, unchanged,
changed (created, modified or of another type) or deleted. The pair decides the action. Before
that, renames are recognised (by inode on the NFS side, by size, mtime and content on the
Windows side) and performed as renames; paths whose names Windows cannot hold are encoded.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import NamedTuple

from filesim.sync import names
from filesim.sync.guard import DeletionGuard
from filesim.sync.plan import NFS, WINDOWS, Action, Change, Do, Facts, classify, decide
from filesim.sync.problems import Problems
from filesim.sync.state import Entry, State, agreed_entry
from filesim.sync.tree import (
    Blocked,
    DestinationChanged,
    Kind,
    NotAFile,
    SideUnavailable,
    Sig,
    SourceChanged,
    Tree,
    sig_hash,
)

NAME_POLICIES = ("encode", "report")
RACY_SECONDS = 2.0
#: A Windows hint this soon after the agent's own copy there is taken as the copy's echo.
ECHO_SECONDS = 10.0
#: A Windows file dated this long ago (by the agent's clock) is not being written: copied at
#: first sight, as a seed's files are. The margin covers whole-second mtimes and a laptop's
#: clock a little apart from the VM's; anything newer waits for a second look.
OLD_ENOUGH = 30.0
#: While Windows→NFS deletions go through, the share's marker is looked at every this many.
MARKER_EVERY = 16
#: A batch of more items than this logs its actions as one line each (per action, direction).
BULK = 100
#: New files looked up as possible rename targets: per new folder tree, and per batch for new
#: files in folders already agreed (a copy must not cost a lookup per file).
RENAME_TRIES_PER_TREE = 20
RENAME_TRIES_LOOSE = 100
REFUSED = {errno.EACCES: "refused (open in another program, read-only or locked?)",
           errno.EPERM: "refused (open in another program, read-only or locked?)",
           errno.EBUSY: "busy (open in another program?)",
           errno.ETXTBSY: "busy (open in another program?)",
           errno.EROFS: "the filesystem is read-only",
           errno.ENOSPC: "no space left",
           errno.EDQUOT: "no space left (quota)",
           errno.ENAMETOOLONG: "the path is too long",
           errno.EINVAL: "the name was refused"}


@dataclass
class Item:
    """One path on both sides: its NFS name, its Windows name and what each side holds."""

    path: str
    win: str
    nfs: Sig | None
    windows: Sig | None

    def sig(self, side: str) -> Sig | None:
        """The signature on ``side``."""
        return self.nfs if side == NFS else self.windows

    def name(self, side: str) -> str:
        """The path as ``side`` names it."""
        return self.path if side == NFS else self.win


class Seen(NamedTuple):
    """One side of a pending change: its signature, stable since (monotonic), first seen (wall)."""

    sig: Sig | None
    since: float
    wall: float


@dataclass(slots=True)
class Pending:
    """A change not yet copied: when it was first seen, and what each side showed since when.

    Slots and one tuple per side: a seed of 100,000 new files holds one of these per file.
    """

    first_seen: float
    nfs: Seen | None = None
    windows: Seen | None = None

    def side(self, side: str) -> Seen | None:
        """What ``side`` showed."""
        return self.nfs if side == NFS else self.windows

    def record(self, side: str, seen: Seen) -> None:
        """Note what ``side`` shows now."""
        if side == NFS:
            self.nfs = seen
        else:
            self.windows = seen

    def stable_since(self) -> float:
        """Since when (monotonic) the sides seen have been stable."""
        return min((s.since for s in (self.nfs, self.windows) if s), default=self.first_seen)


@dataclass(frozen=True)
class Settings:
    """How the reconciler decides (the agent's command line)."""

    mode: str
    settle: float = 0.5
    max_delay: float = 5.0
    max_delete_fraction: float = 0.5
    #: Files deleted within the guard's window beyond which the rest are held.
    max_delete_rate: int = 100
    windows_names: str = "encode"
    #: Length of the Windows path of the share's root (``C:\\simulator-data\\nas-backup``).
    windows_root_length: int = 28


@dataclass
class Report:
    """What the reconciler has done since start; feeds the status file and the summary."""

    conflicts: list[dict[str, object]] = field(default_factory=list)
    conflict_count: int = 0
    copied: int = 0
    copied_bytes: int = 0
    deleted: int = 0
    renamed: int = 0

    def conflict(self, **details: object) -> None:
        """Count a conflict and keep its details among the last twenty."""
        self.conflict_count += 1
        self.conflicts = [*self.conflicts[-19:], {"at": time.time(), **details}]


def racy(win_mtime_ns: int, now: float) -> bool:
    """Whether an agreed Windows mtime is too close to now to prove an edit would change it.

    A file dated in the future is no more racy than one in the past: an edit gives it the
    current time, which differs (it would be checked by content forever otherwise).
    """
    return abs(now - win_mtime_ns / 1e9) < RACY_SECONDS


def conflict_name(rel: str, side: str, when: float) -> str:
    """``<stem>.conflict-<side>-<UTC yyyymmddThhmmssZ><suffix>`` next to ``rel``."""
    path = PurePosixPath(rel)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return str(path.with_name(f"{path.stem}.conflict-{side}-{stamp}{path.suffix}"))


def _canonical(win: str) -> bool:
    """Whether a Windows path is what its NFS path encodes to (plain ASCII names always are)."""
    return win.isascii() or names.encode_path(names.decode_path(win)) == win


def _name(path: str) -> str:
    """``a/b/c`` → ``c``."""
    return path.rpartition("/")[2]


def _ancestors(path: str) -> list[str]:
    """``a/b/c`` → ``a/b``, ``a``."""
    found = []
    while "/" in path:
        path = path.rpartition("/")[0]
        found.append(path)
    return found


def _parent(path: str) -> str:
    """``a/b/c`` → ``a/b``; a top-level name → "" (paths are relative, '/'-separated)."""
    return path.rpartition("/")[0]


def _other(side: str) -> str:
    return WINDOWS if side == NFS else NFS


class Reconciler:
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

    # -- names -------------------------------------------------------------------------------

    def win_path(self, path: str, taken: dict[str, str] | None = None) -> str | None:
        """The Windows name of an NFS path; None where Windows cannot name it.

        The agreed one, else the encoded one, else (another path holds that name) a visible
        case-collision alternative.
        """
        agreed = self.state.win_of(path)
        if agreed is not None:
            return agreed
        parent, _, name = path.rpartition("/")
        base = self.win_path(parent, taken) if parent else ""
        if base is None:
            return None
        encoded = names.encode(name, top=not parent)
        if encoded != name and self.settings.windows_names == "report":
            return None
        taken = taken if taken is not None else {}
        candidate, n = encoded, 1
        while True:
            win = f"{base}/{candidate}" if base else candidate
            owner = self.state.path_of_win(win) or taken.get(self.state.win_key(win))
            if owner is None:
                owner = self._windows_owner(base, candidate)
            if owner in (None, path):
                taken[self.state.win_key(win)] = path
                return win
            n += 1
            candidate = names.alternative(encoded, n)

    def _windows_owner(self, base: str, candidate: str) -> str | None:
        """The NFS path an untracked Windows entry named like ``candidate`` stands for."""
        if not self.trees[WINDOWS].case_insensitive:
            return None
        listing = self._listings.get(base)
        if listing is None:
            listing = self._listings[base] = {names.case_key(n): n
                                              for n in self.trees[WINDOWS].listing(base)}
        existing = listing.get(names.case_key(candidate))
        if existing is None:
            return None
        win = f"{base}/{existing}" if base else existing
        return self.state.path_of_win(win) or self.nfs_path(win)

    def nfs_path(self, win: str, taken: dict[str, str] | None = None) -> str:
        """The NFS path a Windows path stands for: the agreed one, else decoded.

        Two Windows names can decode to one NFS name (``\u201bstray.txt`` and ``stray.txt``): the
        one agreed (or, within ``taken``, met first) keeps it, the other gets a visible,
        stable alternative (``stray (name 2).txt``).
        """
        known = self.state.path_of_win(win)
        if known is not None:
            return known
        parent, _, name = win.rpartition("/")
        base = self.nfs_path(parent, taken) if parent else ""
        decoded = names.decode(name, top=not parent)
        candidate, n = decoded, 1
        while True:
            path = f"{base}/{candidate}" if base else candidate
            owner = self.state.win_of(path)
            if owner is None and taken is not None:
                owner = taken.get(path)
            if owner is None or owner == win:
                if taken is not None:
                    taken[path] = win
                return path
            n += 1
            candidate = names.alternative(decoded, n, "name")

    def name_problem(self, path: str) -> str | None:
        """Why the Windows side cannot hold ``path``, if it cannot."""
        win = self.win_path(path)
        if win is None:
            return "the name is not valid on Windows (sync.windowsNames: report)"
        if names.too_long(win, self.settings.windows_root_length):
            return f"the path is too long for Windows ({names.MAX_PATH} characters)"
        return None

    # -- observing ---------------------------------------------------------------------------

    def worth_a_look(self, side: str, names: Iterable[str]) -> set[str]:
        """The event or hint paths on ``side`` whose file may differ from the agreed version.

        The agent's own copies raise events (NFS) and hints (Windows) too: a file that still
        has its agreed signature, and that nothing waits on, needs no pass. Folders always do
        (their signature does not tell what happened inside); so does a racy Windows file,
        after its content is checked. A hinted Windows file that kept its signature and is no
        echo of the agent's own copy is hashed: its edit may have kept size and mtime
        (``touch -r``, ``robocopy /COPY:DAT``).
        """
        state, tree = self.state, self.trees[side]
        worth = set()
        now = self.clock()
        for name in names:
            if tree.ignored_path(name):
                continue  # the agent's own files, a fault's ballast (on Windows: marker, folder)
            path = name if side == NFS else state.path_of_win(name)
            agreed = None if path is None else (
                state.nfs_hash(path) if side == NFS else state.win_hash(name))
            if (path is None or agreed is None or state.is_dir(path) or path in self.pending
                    or path in self.forced or self.problems.get(path) is not None):
                worth.add(name)
                continue
            if side == WINDOWS and path in self.racy:
                self.verify(path)
                worth.add(name)
                continue
            try:
                sig = tree.stat(name)
            except SideUnavailable:
                sig = None
            changed = sig is None or sig_hash(sig) != agreed
            if changed or (side == WINDOWS and not self._echo_of_own_copy(path, now)
                           and self.verify(path)):
                worth.add(name)
        return worth

    def _echo_of_own_copy(self, path: str, now: float) -> bool:
        return now - self.echoes.get(path, -ECHO_SECONDS) < ECHO_SECONDS

    def observe(self, nfs_paths: Iterable[str] = (), win_paths: Iterable[str] = ()) -> list[Item]:
        """Items for ``nfs_paths`` and the paths ``win_paths`` stand for.

        Everything below those that are folders on either side comes too, and so does the
        source of a rename whose new name is among them (its hints may come apart).
        """
        self._listings.clear()
        for tree in self.trees.values():
            tree.begin_batch()
        wanted = set(nfs_paths) | {self.nfs_path(w) for w in win_paths}
        wanted.discard("")
        items = self._observe(wanted)
        sources = self._rename_sources(items)
        if sources - wanted:
            self._sources = sources
            items = self._observe(wanted | sources)
        return items

    def _observe(self, wanted: set[str]) -> list[Item]:
        nfs_view = self.trees[NFS].view(wanted)
        wins = set()
        for path in wanted | nfs_view.keys():
            win = self.win_path(path)
            if win is not None:
                wins.add(win)
            wins.update(self.state.win_of(c) for c in self.state.under(path))
        win_view = self.trees[WINDOWS].view(wins)
        return self._pair(wanted | nfs_view.keys(), nfs_view.get, win_view.get, win_view)

    def _rename_sources(self, items: list[Item]) -> set[str]:
        """Agreed paths that new paths among ``items`` were renamed from, found gone by name.

        A rename's hints can arrive in pieces, the new names first, or only a folder's files:
        a new entry whose rename key matches an agreed one whose name is gone on that side is
        that entry, renamed. Where the new entry's folder is new too and the old one's is gone
        as well, the folder is what moved (both folders' trees are then looked at). A copy
        (keys match, nothing is gone) costs a few lookups per new folder, not one per file.
        """
        present = {i.path for i in items}
        # What this batch already holds gone is matched by _renames; look for the rest only.
        gone = {(side, self._new_key(side, i, sig)) for i in items for side in (NFS, WINDOWS)
                if i.path in self.state and i.sig(side) is None
                and (sig := self.state.nfs_sig(i.path) if side == NFS else
                     self.state.win_sig(i.win or "")) is not None and not sig.is_dir}
        found: set[str] = set()
        tries: dict[str, int] = {}
        for item in sorted(items, key=lambda i: i.path):
            if item.path in self.state:
                continue
            top = item.path  # the new tree it belongs to: its files are tried a few times
            while _parent(top) and _parent(top) not in self.state:
                top = _parent(top)
            if top in found or any(a in found for a in _ancestors(top)):
                continue
            budget = RENAME_TRIES_PER_TREE if top != item.path else RENAME_TRIES_LOOSE
            group = top if top != item.path else ""
            if tries.get(group, 0) >= budget:
                continue
            for side in (NFS, WINDOWS):
                sig = item.sig(side)
                if sig is None or item.sig(_other(side)) is not None or sig.kind > Kind.DIR or (
                        not sig.is_dir and (side, self._new_key(side, item, sig)) in gone):
                    continue
                tries[group] = tries.get(group, 0) + 1
                for old in self.state.renamed_from(side, sig, _name(item.win or item.path)):
                    if old in present or old in found or not self._gone(side, old):
                        continue
                    new = item.path
                    while (_parent(new) and _parent(old) and _parent(new) != _parent(old)
                           and _name(new) == _name(old)
                           and _parent(new) not in self.state and _parent(old) in self.state
                           and self._gone(side, _parent(old))):
                        new, old = _parent(new), _parent(old)
                    found |= {old, new}  # the new folder too: it is matched as a whole
                    present |= {old, new}
                    break
        return found

    def _gone(self, side: str, path: str) -> bool:
        """Whether the agreed ``path`` is missing on ``side`` now (looked up by name)."""
        name = path if side == NFS else self.state.win_of(path)
        return name is not None and self.trees[side].stat(name) is None \
            and not self.trees[side].under_unreadable(name)

    def full_scan(self, *, windows: dict[str, Sig] | None, windows_deleted: set[str],
                  nfs: dict[str, Sig] | None, nfs_deleted: set[str], final: bool = True,
                  chunked: bool = False) -> list[Item]:
        """Items for every path that differs from the state on either side (poll results).

        A path a poll did not report is as agreed on that side; without a poll of a side
        (None), that side is looked at for the paths the other changed. A name a listing
        lacked is looked up by name before it counts as deleted (a listing may leave entries
        out). A chunk of a poll still under way (``final`` off) brings only its own paths;
        after a poll handed chunks over (``chunked``), what waits (pending, problems) was
        reported in a chunk, if at all, so it is looked up, not taken as agreed.
        """
        self._listings.clear()
        if windows is not None:
            windows_deleted = self._look_again(WINDOWS, windows, windows_deleted)
        if nfs is not None:
            nfs_deleted = self._look_again(NFS, nfs, nfs_deleted)
        if final and windows is not None:
            self._check_racy(windows, windows_deleted)
        paths = {self.nfs_path(w) for w in windows or ()}
        paths |= {self.state.path_of_win(w) or self.nfs_path(w) for w in windows_deleted}
        extras: set[str] = set()
        if final:
            extras = {p for p in self.forced if p in self.state}
            # What waits (to settle, or on a problem) may have vanished from both sides meanwhile.
            extras |= self.pending.keys() | {p.path for p in self.problems}
            paths |= extras
        if nfs is not None:
            paths |= nfs.keys() | nfs_deleted
        paths.discard("")
        looked_up = {w for p in extras if (w := self.state.win_of(p) or self.win_path(p))} \
            if chunked else set()

        def nfs_sig(path: str) -> Sig | None:
            if nfs is None or (chunked and path in extras and path not in nfs
                               and path not in nfs_deleted):
                return self.trees[NFS].stat(path)
            return nfs[path] if path in nfs else None if path in nfs_deleted else self.state.nfs_sig(path)

        def win_sig(win: str) -> Sig | None:
            if windows is None or (win in looked_up and win not in windows
                                   and win not in windows_deleted):
                return self.trees[WINDOWS].stat(win)
            return windows[win] if win in windows else (
                None if win in windows_deleted else self.state.win_sig(win))

        return self._pair(paths, nfs_sig, win_sig, windows or ())

    def _look_again(self, side: str, changed: dict[str, Sig], missing: set[str]) -> set[str]:
        """Of the names a poll's listings lacked, those a lookup by name finds missing too.

        One found is added to ``changed`` (as it is now); below a folder that refused the
        lookup nothing is known, and nothing is taken for deleted.
        """
        tree, gone = self.trees[side], set()
        for name in missing:
            sig = tree.stat(name)
            if sig is not None:
                changed[name] = sig
            elif not tree.under_unreadable(name):
                gone.add(name)
        return gone

    def _pair(self, paths: Iterable[str], nfs_sig: Callable[[str], Sig | None],
              win_sig: Callable[[str], Sig | None], seen_wins: Iterable[str]) -> list[Item]:
        """Match both sides into items: by agreed names, else by encoding.

        A Windows name that changed only in case is the same item. Where two Windows names
        stand for one NFS name, the canonical one (what that NFS name encodes to) keeps it.
        Items at or below a folder either side refused to show are left out (see
        ``_unreadable_problems``): what is below it is unknown, not deleted.
        """
        items: dict[str, Item] = {}

        def add(path: str) -> Item:
            item = items.get(path)
            if item is None:
                item = items[path] = Item(path, "", nfs_sig(path), None)
            return item

        for path in paths:
            add(path)
        for path in list(items):
            if self.state.is_dir(path) or (items[path].nfs or _FILE).is_dir:
                for child in self.state.under(path):
                    add(child)
        claimed: dict[str, str] = {}
        for win in sorted(seen_wins, key=lambda w: (not _canonical(w), w)):
            item = add(self.nfs_path(win, claimed))
            agreed = self.state.win_of(item.path)
            if agreed is not None and agreed != win:
                if names.case_key(agreed) == names.case_key(win) and win_sig(agreed) is None:
                    item.win, item.windows = win, win_sig(win)  # renamed on Windows, in case only
                continue
            item.win, item.windows = win, win_sig(win)
        taken: dict[str, str] = {}
        for item in sorted(items.values(), key=lambda i: i.path):
            if not item.win:
                item.win = self.win_path(item.path, taken) or ""
                item.windows = win_sig(item.win) if item.win else None
        self._unreadable = {(side, folder) for side, tree in self.trees.items()
                            for folder in tree.unreadable}
        nfs_tree, win_tree = self.trees[NFS], self.trees[WINDOWS]
        return sorted((i for i in items.values() if not (
            (nfs_tree.unreadable and nfs_tree.under_unreadable(i.path))
            or (win_tree.unreadable and i.win and win_tree.under_unreadable(i.win)))),
            key=lambda i: i.path)

    def _check_racy(self, windows: dict[str, Sig], deleted: set[str]) -> None:
        """Mark racy entries whose Windows content no longer matches as changed."""
        now = time.time()
        for path in list(self.racy):
            entry = self.state.get(path)
            if entry is None or entry.win in windows or entry.win in deleted or not entry.sha:
                self.racy.discard(path)
                continue
            try:
                differs = self.trees[WINDOWS].hash(entry.win) != entry.sha
            except OSError:
                self.racy.discard(path)
                continue
            if differs:
                self.forced.add(path)
                self.racy.discard(path)
            elif not racy(entry.win_mtime, now):
                self.racy.discard(path)

    def verify(self, path: str) -> bool:
        """Hash the Windows copy of ``path`` against the agreed content (the background sweep).

        True if it differs: it is then treated as changed.
        """
        entry = self.state.get(path)
        if entry is None or entry.is_dir or not entry.sha:
            return False
        try:
            if self.trees[WINDOWS].stat(entry.win) != entry.win_sig():
                return False  # changed visibly: the poll sees it
            differs = self.trees[WINDOWS].hash(entry.win) != entry.sha
        except OSError:
            return False
        if differs:
            self.forced.add(path)
        return differs

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

    def _unreadable_problems(self) -> None:
        """A folder either side refused to list is a problem of its own (nothing below it moves)."""
        unreadable, self._unreadable = self._unreadable, set()
        for side, folder in sorted(unreadable):
            path = folder if side == NFS else self.nfs_path(folder)
            self.problems.report(side, path, "cannot be listed (permission denied: a deny ACL or "
                                 "another user's folder?); nothing below it is synced or deleted")

    def _reconcile(self, items: list[Item]) -> None:
        # A seed of 100,000 files logs a line per batch, not one per file (at info).
        self._bulk = {} if len(items) > BULK else None
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
                try:
                    self._run(item, action)
                except Exception as exc:
                    self._failed(item, exc, action)
        finally:
            self.state.commit()

    def _failed(self, item: Item, exc: Exception, action: Action | None) -> None:
        """Turn a failure into a retry (a racing change) or the path's problem; never a crash."""
        if isinstance(exc, SideUnavailable):
            raise exc
        if isinstance(exc, OSError) and exc.errno in (errno.EIO, errno.ENOTCONN):
            raise SideUnavailable(f"{exc}") from exc
        if isinstance(exc, SourceChanged | DestinationChanged | FileExistsError | NotAFile):
            self.log.debug("retry", extra={"path": names.display(item.path),
                                           "why": type(exc).__name__})
            if isinstance(exc, DestinationChanged) and action is not None and action.dest == WINDOWS:
                # Changed there, maybe invisibly (same size and mtime over 9p): a conflict next.
                self.forced.add(item.path)
            self._touch_pending(item.path)
            return
        side = (action.dest or action.source) if action is not None and (
            action.dest or action.source) else NFS
        if isinstance(exc, Blocked):
            self.problems.report(side, item.path, f"not synced: {exc.strerror}", policy=True)
        elif isinstance(exc, OSError) and exc.errno == errno.ENOSPC and side == NFS:
            self.problems.report(side, item.path, self.trees[NFS].full())  # bytes or inodes
        elif isinstance(exc, OSError):
            self.problems.report(side, item.path, REFUSED.get(exc.errno or 0, exc.strerror or str(exc)))
        else:
            self.log.exception("unexpected", extra={"path": names.display(item.path)})
            self.problems.report(side, item.path, f"unexpected {type(exc).__name__}: {exc}")

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
                _other(action.dest), item.path, None) is not True:
            return None
        if action is not None and busy:
            action = Action(action.do, action.source, action.dest, action.note or "busy")
        return action

    def _replaces_folder(self, item: Item, action: Action) -> bool:
        """A file replaces a folder: its children must go first (deletions run later)."""
        dest = item.sig(action.dest)
        source = item.sig(action.source)
        return dest is not None and dest.is_dir and source is not None and not source.is_dir

    # -- settling ----------------------------------------------------------------------------

    def _settled(self, side: str, path: str, sig: Sig | None) -> bool | str:
        """Whether a changed file may be copied, or a deletion (``sig`` None) propagated.

        True once stable for the settle time; for a file, "busy" once changing for longer
        than ``max_delay`` (a consistent version is published anyway); else False. A
        deletion is settled once it was seen twice, the settle time apart.
        """
        if self.settle == 0 or (sig is not None and sig.is_dir):
            return True
        now = self.clock()
        record = self.pending.get(path)
        if record is None:
            record = self.pending[path] = Pending(now)
        seen = record.side(side)
        if seen is None or seen.sig != sig:
            record.record(side, Seen(sig, now, seen.wall if seen else time.time()))
            age = time.time() - sig.mtime_ns / 1e9 if sig is not None else 0.0
            if sig is not None and (path in self.complete[side] or age >= (
                    self.settle if side == NFS else max(self.settle, OLD_ENOUGH))):
                # Its writer is done, or it is untouched for long enough: the settle time on
                # NFS (one clock); on Windows OLD_ENOUGH (whole seconds, another clock).
                return True
        elif now - seen.since >= self.settle:
            return True
        if sig is not None and now - record.first_seen >= self.settings.max_delay:
            return "busy"
        return False

    def _touch_pending(self, path: str) -> None:
        """A copy lost a race: keep the path pending, so it is retried after the settle time."""
        now = self.clock()
        record = self.pending.get(path)
        if record is None:
            self.pending[path] = Pending(now)
            return
        for side in (NFS, WINDOWS):
            seen = record.side(side)
            if seen is not None:
                record.record(side, seen._replace(since=now))

    def pending_paths(self) -> set[str]:
        """Paths changed on one side and not yet copied."""
        return set(self.pending)

    def next_settle_check(self) -> float:
        """When (monotonic) the next pending path may be ready."""
        starts = [r.stable_since() for path, r in self.pending.items()
                  if not self.problems.waiting(path)]
        return min(starts) + (self.settle or 0.05) if starts else float("inf")

    # -- acting ------------------------------------------------------------------------------

    def _run(self, item: Item, action: Action) -> None:
        if action.do is Do.FORGET:
            self.state.drop(item.path)
            self.pending.pop(item.path, None)
            self.problems.resolve(item.path)
            self.problems.clear_notice(item.path)
        elif action.do is Do.COPY:
            self._copy(item, action.source, action.dest, busy=action.note == "busy")
            if action.note == "edit-wins":
                self.report.conflict(path=names.display(item.path), kind="delete-vs-edit",
                                     kept=action.source)
                self.log.warning("edit wins over delete", extra={"path": names.display(item.path),
                                                                 "kept": action.source})
        elif action.do is Do.MERGE:
            self._merge(item)
        elif action.do is Do.DISOWN:
            entry = self.state.get(item.path)
            assert entry is not None and item.nfs is not None and item.windows is not None
            self._agree(item.path, agreed_entry(item.win, item.nfs, item.windows, None, by_agent=False))
        elif action.do is Do.KEEP_BOTH:
            self._save_nfs_version_beside(item)
        elif action.do is Do.NOT_SYNCED:
            self.pending.pop(item.path, None)
            self.problems.report(action.source, item.path, f"not synced: {action.note}", policy=True,
                                 unsynced="symlink" not in action.note and "special" not in action.note)
            return
        self.pending.pop(item.path, None)
        self.problems.resolve(item.path)

    def _copy(self, item: Item, source: str, dest: str, *, busy: bool = False,
              by_agent: bool | None = None) -> None:
        src_sig, dst_sig = item.sig(source), item.sig(dest)
        assert src_sig is not None
        started = self.clock()
        tree = self.trees[dest]
        entry = self.state.get(item.path)
        if dst_sig is not None and dst_sig.is_dir != src_sig.is_dir:
            self._clear_other_type(item, dest, dst_sig, entry)
            dst_sig = None
        if src_sig.is_dir:
            new = tree.mkdir(item.name(dest))
            sha = None
        elif entry is not None and dst_sig is not None and self._same_content(item, source, entry):
            new = dst_sig if dst_sig.readonly == src_sig.readonly else tree.set_readonly(
                item.name(dest), src_sig.readonly)
            sha = entry.sha
        else:
            copied = tree.copy_from(self.trees[source], item.name(source), src_sig,
                                    dest=item.name(dest), dest_expected=dst_sig,
                                    dest_sha=entry.sha if entry is not None else None, busy_ok=busy,
                                    progress=self._copying)
            new, sha, src_sig = copied.dest, copied.sha, copied.source
            self.report.copied += 1
            self._log_action(item.path, source, dest, src_sig, started, "copy")
        if source == NFS and item.path in self.trees[NFS].linked:
            self.links_changed = True
        nfs, windows = (src_sig, new) if source == NFS else (new, src_sig)
        if dest == WINDOWS:
            self._echo(item.path)
        agent_wrote_windows = dest == WINDOWS if by_agent is None else by_agent
        self._agree(item.path, agreed_entry(item.win, nfs, windows, sha, by_agent=agent_wrote_windows))
        self.forced.discard(item.path)

    def _copying(self, size: int) -> None:
        """Bytes copied as a copy goes (a big file's progress shows while it is copied)."""
        self.report.copied_bytes += size
        self.on_progress()

    def _echo(self, path: str) -> None:
        """Note that the agent just wrote the Windows copy of ``path`` (its hints are echoes)."""
        now = self.clock()
        if len(self.echoes) >= 10_000:
            self.echoes = {p: t for p, t in self.echoes.items() if now - t < ECHO_SECONDS}
        self.echoes[path] = now

    def _same_content(self, item: Item, source: str, entry: Entry) -> bool:
        """Whether a changed source still holds the agreed content (a chmod, a touch -r)."""
        src = item.sig(source)
        if src is None or not src.is_file or entry.is_dir or src.size != entry.size or not entry.sha:
            return False
        try:
            return self.trees[source].hash(item.name(source)) == entry.sha
        except OSError:
            return False

    def _clear_other_type(self, item: Item, dest: str, dst_sig: Sig, entry: Entry | None) -> None:
        """Make way for a file where a folder is (or the reverse) on ``dest``.

        What the destination holds is removed only if it is the agreed version (a Windows file
        is kept among the versions); anything changed there is renamed to a conflict copy.
        """
        tree, name = self.trees[dest], item.name(dest)
        unchanged = entry is not None and classify(dst_sig, entry, dest) is Change.UNCHANGED
        if unchanged and (not dst_sig.is_dir or not tree.listing(name)) and \
                tree.remove(name, dst_sig, entry.sha if dest == WINDOWS else None):
            return
        saved = conflict_name(item.path, dest, time.time())
        saved_name = saved if dest == NFS else (self.win_path(saved) or names.encode_path(saved))
        tree.rename(name, saved_name)
        self.report.conflict(path=names.display(item.path), kind="type-changed",
                             kept=_other(dest), saved_as=names.display(saved))
        self.log.warning("conflict", extra={"path": names.display(item.path), "kind": "type-changed",
                                            "saved_as": names.display(saved)})

    def _merge(self, item: Item) -> None:
        """Both sides changed: equal content agrees, else both versions survive on both sides."""
        nfs, windows = item.nfs, item.windows
        assert nfs is not None and windows is not None
        if nfs.is_dir and windows.is_dir:
            self._agree(item.path, agreed_entry(item.win, nfs, windows, None, by_agent=False))
            return
        if nfs.is_file and windows.is_file and nfs.size == windows.size:
            digest = self.trees[NFS].hash(item.path)
            if digest == self.trees[WINDOWS].hash(item.win):
                self._agree(item.path, agreed_entry(item.win, nfs, windows, digest, by_agent=False))
                self.forced.discard(item.path)
                return
        winner, loser = self._latest_change(item)
        saved = conflict_name(item.path, loser, time.time())
        saved_win = self.win_path(saved) or names.encode_path(saved)
        saved_names = {NFS: saved, WINDOWS: saved_win}
        loser_sig, winner_sig = item.sig(loser), item.sig(winner)
        assert loser_sig is not None and winner_sig is not None
        loser_tree, winner_tree = self.trees[loser], self.trees[winner]
        if loser_sig.is_dir or winner_sig.is_dir:
            # A file and a folder: the loser moves aside, the winner's type takes the name.
            loser_tree.rename(item.name(loser), saved_names[loser])
            self.state.drop(item.path)
            self._copy(Item(item.path, item.win, item.nfs if winner == NFS else None,
                            item.windows if winner == WINDOWS else None), winner, loser)
            self.report.conflict(path=names.display(item.path), kind="type-changed", kept=winner,
                                 saved_as=names.display(saved))
        else:
            # The winner's version replaces the loser's, which is set aside in the same moment
            # (the name never goes missing); then the loser's version reaches the winner's side.
            won = loser_tree.copy_from(winner_tree, item.name(winner), winner_sig,
                                       dest=item.name(loser), dest_expected=loser_sig,
                                       set_aside=saved_names[loser])
            pair = (won.source, won.dest) if winner == NFS else (won.dest, won.source)
            self._agree(item.path, agreed_entry(item.win, *pair, won.sha, by_agent=winner == NFS))
            aside = loser_tree.stat(saved_names[loser])
            assert aside is not None
            kept = winner_tree.copy_from(loser_tree, saved_names[loser], aside, dest=saved_names[winner])
            pair = (kept.source, kept.dest) if loser == NFS else (kept.dest, kept.source)
            self._agree(saved, agreed_entry(saved_win, *pair, kept.sha, by_agent=winner == WINDOWS))
            self.report.copied += 2
            self.report.conflict(path=names.display(item.path), kind="both-changed", kept=winner,
                                 saved_as=names.display(saved))
        self.forced.discard(item.path)
        self.log.warning("conflict", extra={"path": names.display(item.path), "kept": winner,
                                            "saved_as": names.display(saved)})

    def _latest_change(self, item: Item) -> tuple[str, str]:
        """(winner, loser): the side whose change the agent saw last keeps the name.

        Changes first seen within a second of each other (e.g. both made while the agent was
        down) are ordered by mtime; Windows wins a tie.
        """
        record = self.pending.get(item.path)
        seen_nfs, seen_windows = (record.nfs, record.windows) if record else (None, None)
        n = seen_nfs.wall if seen_nfs else 0.0
        w = seen_windows.wall if seen_windows else 0.0
        if abs(n - w) <= 1.0:
            assert item.nfs is not None and item.windows is not None
            n, w = item.nfs.mtime_ns // 10**9, item.windows.mtime_ns // 10**9
        return (NFS, WINDOWS) if n > w else (WINDOWS, NFS)

    def _save_nfs_version_beside(self, item: Item) -> None:
        """to-windows: a tester's Windows file is never replaced; the NFS version goes beside it."""
        assert item.nfs is not None and item.windows is not None
        saved = conflict_name(item.path, NFS, time.time())
        self.trees[WINDOWS].copy_from(self.trees[NFS], item.path, item.nfs,
                                      dest=self.win_path(saved) or names.encode_path(saved))
        self._agree(item.path, agreed_entry(item.win, item.nfs, item.windows, None, by_agent=False))
        self.report.conflict(path=names.display(item.path), kind="tester-file-kept",
                             saved_as=names.display(saved))
        self.log.warning("tester file kept", extra={"path": names.display(item.path),
                                                    "saved_as": names.display(saved)})

    def _agree(self, path: str, entry: Entry) -> None:
        """Record that both sides hold the same version of ``path``.

        A racy entry gets its content hash (read from the local NFS side): the racy check
        compares the Windows file against it.
        """
        if not entry.is_dir and racy(entry.win_mtime, time.time()):
            self.racy.add(path)
            if entry.sha is None:
                entry = entry._replace(sha=self.trees[NFS].hash(path))
        if path not in self.state and not entry.is_dir:
            self.guard.note_created()
        self.state.put(path, entry)
        for done in self.complete.values():
            done.discard(path)
        self._name_notice(path, entry.win)

    def _name_notice(self, path: str, win: str) -> None:
        """Say when a file has another name on one side than the other would give it."""
        top = "/" not in path
        shown, nfs_name = win.rpartition("/")[2], path.rpartition("/")[2]
        natural, decoded = names.encode(nfs_name, top=top), names.decode(shown, top=top)
        if shown == natural or decoded == nfs_name:
            self.problems.clear_notice(path)
        elif names.alternative_of(nfs_name, "name") == decoded:
            self.problems.notice(NFS, path, f"named {names.display(nfs_name)!r} on NFS: the "
                                 f"Windows name {shown!r} stands for {names.display(decoded)!r}, "
                                 "which another Windows name there has too")
        else:
            self.problems.notice(WINDOWS, path, f"shown on Windows as {shown!r}: another name "
                                 f"there differs from {natural!r} only in case")

    # -- renames -----------------------------------------------------------------------------

    def _renames(self, items: list[Item]) -> list[Item]:
        """Perform renames found among ``items`` on the other side; return the rest.

        NFS: a path gone and a new one with the same inode (and size and mtime for files).
        Windows (fake inodes): a file with the same size, mtime and content; a folder whose
        files match by name, size and mtime; a name that changed only in case.
        """
        done = self._case_renames(items)
        for side in (NFS, WINDOWS):
            # Keys can repeat (small files of one size and second): one with the same name
            # (a folder's files, moved with it) is tried first, then any; content decides.
            gone: dict[object, list[Item]] = {}
            for item in items:
                entry = self.state.get(item.path)
                other = _other(side)
                if entry is not None and item.sig(side) is None and \
                        classify(item.sig(other), entry, other) is Change.UNCHANGED:
                    key = self._rename_key(side, item.path, entry)
                    gone.setdefault(key, []).append(item)
                    gone.setdefault((key, _name(item.path)), []).append(item)
            if not gone:
                continue
            for item in items:
                if item.path in done or self.state.get(item.path) is not None:
                    continue
                sig = item.sig(side)
                if sig is None or item.sig(_other(side)) is not None or not item.win:
                    continue
                key = self._new_key(side, item, sig)
                candidates = [*gone.get((key, _name(item.path)), ()), *gone.get(key, ())]
                old = next((c for c in candidates if c.path not in done
                            and self._confirm(side, c, item)), None)
                if old is None:
                    continue
                try:
                    self._rename(side, old, item)
                except Exception as exc:
                    self.log.info("rename not possible", extra={"path": names.display(item.path),
                                                                "why": str(exc)})
                    continue
                done |= {old.path, item.path}
        if not done:
            return items
        return [i for i in items if not any(p in done for p in (i.path, *_ancestors(i.path)))]

    def _case_renames(self, items: list[Item]) -> set[str]:
        """A Windows name that changed only in case renames the NFS path too, if that is free."""
        done: set[str] = set()
        for item in items:
            entry = self.state.get(item.path)
            if entry is None or not item.win or item.win == entry.win or item.windows is None \
                    or item.nfs is None:
                continue
            new_path = str(PurePosixPath(item.path).with_name(names.decode(PurePosixPath(item.win).name)))
            if new_path == item.path or self.state.get(new_path) or self.trees[NFS].stat(new_path):
                continue
            old = Item(item.path, entry.win, item.nfs, None)
            new = Item(new_path, item.win, None, item.windows)
            try:
                self._rename(WINDOWS, old, new)
            except Exception as exc:
                self.log.info("rename not possible", extra={"path": names.display(new_path),
                                                            "why": str(exc)})
                continue
            done |= {item.path, new_path}
        return done

    def _rename_key(self, side: str, path: str, entry: Entry) -> object:
        if side == NFS:
            return ("dir", entry.nfs_ino) if entry.is_dir else ("file", entry.nfs_ino, entry.size,
                                                               entry.nfs_mtime)
        if entry.is_dir:
            return ("dir", self._children_signature_from_state(path))
        return ("file", entry.size, entry.win_mtime)

    def _new_key(self, side: str, item: Item, sig: Sig) -> object:
        if side == NFS:
            return ("dir", sig.ino) if sig.is_dir else ("file", sig.ino, sig.size, sig.mtime_ns)
        if sig.is_dir:
            return ("dir", self._children_signature_on_windows(item.win))
        return ("file", sig.size, sig.mtime_ns)

    def _children_signature_from_state(self, path: str) -> frozenset[tuple[str, int, int]] | None:
        prefix = len(path) + 1
        entries = ((p, self.state.get(p)) for p in self.state.under(path))
        children = frozenset((p[prefix:], e.size, e.win_mtime) for p, e in entries if e and not e.is_dir)
        return children or None

    def _children_signature_on_windows(self, win: str) -> frozenset[tuple[str, int, int]] | None:
        prefix = len(win) + 1
        children = frozenset((names.decode_path(w[prefix:], top=False), s.size, s.mtime_ns)
                             for w, s in self.trees[WINDOWS].scan(win).items() if s.is_file)
        return children or None

    def _confirm(self, side: str, old: Item, new: Item) -> bool:
        """A Windows file rename is confirmed by content (size and mtime may coincide)."""
        entry = self.state.get(old.path)
        if side == NFS or entry is None or entry.is_dir:
            return entry is not None
        try:
            return bool(entry.sha) and self.trees[WINDOWS].hash(new.win) == entry.sha
        except OSError:
            return False

    def _rename(self, side: str, old: Item, new: Item) -> None:
        """``old`` became ``new`` on ``side``: rename it on the other side too, and in the state."""
        other = _other(side)
        entry = self.state.get(old.path)
        assert entry is not None
        if side == NFS:
            # A new name differing only in case takes the old one's place, not an alternative.
            parent = self.win_path(_parent(new.path)) if _parent(new.path) else ""
            plain = names.encode(PurePosixPath(new.path).name)
            plain = f"{parent}/{plain}" if parent else plain
            if names.case_key(plain) == names.case_key(old.win):
                new.win = plain
        sig = self.trees[other].rename(old.name(other), new.name(other))
        self._move_state(old.path, new.path, old.win, new.win)
        moved = self.state.get(new.path)
        assert moved is not None
        side_sig = new.sig(side)
        assert side_sig is not None
        nfs, windows = (side_sig, sig) if side == NFS else (sig, side_sig)
        self.state.put(new.path, agreed_entry(new.win, nfs, windows, moved.sha, by_agent=moved.by_agent))
        self.report.renamed += 1
        self.pending.pop(old.path, None)
        self.pending.pop(new.path, None)
        self.log.info("rename", extra={"direction": f"{side}->{other}",
                                       "from": names.display(old.path), "to": names.display(new.path)})

    def _move_state(self, old: str, new: str, old_win: str, new_win: str) -> None:
        """Re-key the entry of ``old`` and everything below it to ``new`` (notices follow)."""
        for path in [old, *self.state.under(old)]:
            entry = self.state.get(path)
            if entry is None:
                continue
            suffix = path[len(old):]
            win_suffix = entry.win[len(old_win):] if entry.win.startswith(old_win) else suffix
            self.state.drop(path)
            self.problems.clear_notice(path)
            self.problems.resolve(path)  # a held deletion of the old name, say
            self.guard.forget(path)
            self.state.put(new + suffix, entry._replace(win=new_win + win_suffix))
            self._name_notice(new + suffix, new_win + win_suffix)

    # -- deletions ---------------------------------------------------------------------------

    def release(self) -> int:
        """Let the deletions held now through at the next pass; return how many there are."""
        released = self.guard.release()
        self.problems.retry_now(self.guard.released)
        return released

    def _waiting_deletions(self, besides: dict[str, str]) -> int:
        """Deletions seen once and waiting for their second look (they belong to a burst)."""
        return sum(1 for path, r in self.pending.items() if path not in besides and (
            (r.nfs is not None and r.nfs.sig is None)
            or (r.windows is not None and r.windows.sig is None)))

    def _delete(self, deletions: list[tuple[Item, str]]) -> None:
        """Propagate confirmed deletions unless the mass-deletion guard holds them (guard.py).

        Before deletions from Windows go through, and every MARKER_EVERY of them, the share's
        marker is looked at: a NAS folder being deleted loses its marker at some point, and
        what is still queued then stays where it is.
        """
        guard = self.guard
        guard.held = {p for p in guard.held if p in self.state}  # gone on both sides since
        guard.released = {p for p in guard.released if p in self.state}
        if not deletions:
            return
        now = self.clock()
        files = {item.path: dest for item, dest in deletions
                 if not (item.sig(dest) or _DIR).is_dir}
        sources = sorted({_other(dest) for _, dest in deletions})
        empty = [side for side in sources if self.trees[side].is_empty()]
        before = set(guard.held)
        allowed, held, why = guard.assess(
            now, set(files), tracked=self.state.files(), waiting=self._waiting_deletions(files),
            source_empty=bool(empty), source=empty[0] if empty else "")
        if held - before:
            self.log.error("deletions held", extra={"reason": why, "count": len(guard.held)})
        for path in held:
            self.pending.pop(path, None)  # held, not pending: the guard and its problem keep it
            dest = files[path]
            # Held on its way to NFS, a file is on the export only (a flush is not clean).
            self.problems.report(dest, path, f"deletion held: {why}; run `invoke release` to let "
                                 f"them through, or delete them on the {dest} side too",
                                 policy=True, unsynced=dest == NFS, quiet=True)
        # Folders go only with their files (a held file keeps its folder: remove() refuses).
        todo = sorted(((item, dest) for item, dest in deletions
                       if item.path in allowed or item.path not in files),
                      key=lambda d: d[0].path, reverse=True)
        done: set[str] = set()
        for count, (item, dest) in enumerate(todo):
            if dest == NFS and count % MARKER_EVERY == 0 and not self.share_ok():
                self.log.warning("deletions stopped", extra={
                    "reason": "the Windows share's marker is gone", "left": len(todo) - count})
                for rest, _ in todo[count:]:
                    self._touch_pending(rest.path)
                break
            started = self.clock()
            expected = item.sig(dest)
            entry = self.state.get(item.path)
            try:
                if expected is None or self.trees[dest].remove(
                        item.name(dest), expected, entry.sha if entry and dest == WINDOWS else None):
                    self.state.drop(item.path)
                    self.pending.pop(item.path, None)
                    self.problems.resolve(item.path)
                    self.problems.clear_notice(item.path)
                    self.guard.forget(item.path)
                    if expected is not None and not expected.is_dir:
                        done.add(item.path)
                    self.report.deleted += 1
                    self._log_action(item.path, _other(dest), dest, None, started, "delete")
            except Exception as exc:
                self._failed(item, exc, Action(Do.DELETE, dest=dest))
        guard.propagated(now, done)

    def _log_action(self, path: str, source: str, dest: str, sig: Sig | None, started: float,
                    action: str) -> None:
        """One line per action at info, or, in a bulk batch, at debug and in its summary."""
        size = 0 if sig is None or sig.is_dir else sig.size
        direction = f"{source}->{dest}"
        if self._bulk is not None:
            done = self._bulk.setdefault((action, direction), [0, 0, []])
            done[0], done[1] = done[0] + 1, done[1] + size
            if len(done[2]) < 3:
                done[2].append(names.display(path))
            if not self.log.isEnabledFor(logging.DEBUG):
                return
        self.log.log(logging.DEBUG if self._bulk is not None else logging.INFO, action, extra={
            "direction": direction, "path": names.display(path), "bytes": size,
            "ms": round((self.clock() - started) * 1000, 1)})

    def _log_bulk(self) -> None:
        """The summary of a bulk batch: one line per action and direction."""
        bulk, self._bulk = self._bulk, None
        for (action, direction), (count, size, examples) in sorted((bulk or {}).items()):
            self.log.info(f"{action} (batch)", extra={"direction": direction, "count": count,
                                                      "bytes": size, "examples": examples})


_DIR = Sig(Kind.DIR, 0, 0, 0, 0, False)
_FILE = Sig(Kind.FILE, 0, 0, 0, 0, False)

