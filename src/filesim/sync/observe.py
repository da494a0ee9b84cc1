"""Observing both sides of a batch: what changed, looked up by name, paired per path."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from filesim.sync import names
from filesim.sync.items import (
    ECHO_SECONDS,
    RENAME_TRIES_LOOSE,
    RENAME_TRIES_PER_TREE,
    Item,
    ancestors,
    canonical,
    name_of,
    other_side,
    parent_of,
    racy,
)
from filesim.sync.plan import NFS, WINDOWS
from filesim.sync.tree import Kind, SideUnavailable, Sig, sig_hash

_FILE = Sig(Kind.FILE, 0, 0, 0, 0, False)


class Observer:
    """The reconciler's part that observes (a mixin: see Reconciler)."""

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
            while parent_of(top) and parent_of(top) not in self.state:
                top = parent_of(top)
            if top in found or any(a in found for a in ancestors(top)):
                continue
            budget = RENAME_TRIES_PER_TREE if top != item.path else RENAME_TRIES_LOOSE
            group = top if top != item.path else ""
            if tries.get(group, 0) >= budget:
                continue
            for side in (NFS, WINDOWS):
                sig = item.sig(side)
                if sig is None or item.sig(other_side(side)) is not None or sig.kind > Kind.DIR or (
                        not sig.is_dir and (side, self._new_key(side, item, sig)) in gone):
                    continue
                tries[group] = tries.get(group, 0) + 1
                for old in self.state.renamed_from(side, sig, name_of(item.win or item.path)):
                    if old in present or old in found or not self._gone(side, old):
                        continue
                    new = item.path
                    while (parent_of(new) and parent_of(old) and parent_of(new) != parent_of(old)
                           and name_of(new) == name_of(old)
                           and parent_of(new) not in self.state and parent_of(old) in self.state
                           and self._gone(side, parent_of(old))):
                        new, old = parent_of(new), parent_of(old)
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
        root_problem = self.problems.get("")
        if root_problem is not None and (windows, nfs)[root_problem.side == NFS] is not None:
            self.problems.resolve("")  # the poll listed the root: its refusal is over
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
        for win in sorted(seen_wins, key=lambda w: (not canonical(w), w)):
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
            if entry is None or not entry.sha:
                self.racy.discard(path)
                continue
            if entry.win in windows or entry.win in deleted:
                continue  # the poll saw it; if it was moved, the mark moves with it (renames)
            try:
                differs = self.trees[WINDOWS].hash(entry.win) != entry.sha
            except OSError:
                continue  # looked at again next pass: an unseen edit must not be forgotten
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

    def _unreadable_problems(self) -> None:
        """A folder either side refused to list is a problem of its own (nothing below it moves)."""
        unreadable, self._unreadable = self._unreadable, set()
        for side, folder in sorted(unreadable):
            path = folder if side == NFS else self.nfs_path(folder)
            # A folder whose listing, or an entry whose lookup, was refused.
            self.problems.report(side, path, "cannot be listed or looked at (permission denied: a "
                                 "deny ACL, another user's?); nothing at or below it is synced "
                                 "or deleted")
