"""Renames found on one side, carried out as renames on the other."""

from __future__ import annotations

from pathlib import PurePosixPath

from filesim.sync import names
from filesim.sync.items import Item, ancestors, name_of, other_side, parent_of
from filesim.sync.plan import NFS, WINDOWS, Change, classify
from filesim.sync.state import Entry, agreed_entry
from filesim.sync.tree import Sig


class Renames:
    """The reconciler's part that recognises and performs renames (a mixin: see Reconciler)."""

    def _renames(self, items: list[Item]) -> list[Item]:
        """Perform renames found among ``items`` on the other side; return the rest.

        NFS: a path gone and a new one with the same inode (and size and mtime for files).
        Windows (fake inodes): a file with the same size, mtime and content; a folder whose
        files match by name, size and mtime; a name that changed only in case.
        """
        done = self._case_renames(items)

        def moved(item: Item) -> bool:
            """Renamed in this batch, or below a folder that was: the item is out of date."""
            return any(p in done for p in (item.path, *ancestors(item.path)))

        for side in (NFS, WINDOWS):
            # Keys can repeat (small files of one size and second): one with the same name
            # (a folder's files, moved with it) is tried first, then any; content decides.
            gone: dict[object, list[Item]] = {}
            for item in items:
                if moved(item):
                    continue
                entry = self.state.get(item.path)
                other = other_side(side)
                if entry is not None and item.sig(side) is None and \
                        classify(item.sig(other), entry, other) is Change.UNCHANGED and \
                        not (other == WINDOWS and item.path in self.forced):  # edited unseen there
                    key = self._rename_key(side, item.path, entry)
                    gone.setdefault(key, []).append(item)
                    gone.setdefault((key, name_of(item.path)), []).append(item)
            if not gone:
                continue
            for item in items:
                if moved(item) or self.state.get(item.path) is not None:
                    continue
                sig = item.sig(side)
                if sig is None or item.sig(other_side(side)) is not None or not item.win:
                    continue
                key = self._new_key(side, item, sig)
                candidates = [*gone.get((key, name_of(item.path)), ()), *gone.get(key, ())]
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
        return [i for i in items if not moved(i)] if done else items

    def _case_renames(self, items: list[Item]) -> set[str]:
        """A Windows name that changed only in case renames the NFS path too, if that is free."""
        done: set[str] = set()
        for item in items:
            entry = self.state.get(item.path)
            if entry is None or not item.win or item.win == entry.win or item.windows is None \
                    or item.nfs is None or classify(item.nfs, entry, NFS) is not Change.UNCHANGED \
                    or classify(item.windows, entry, WINDOWS) is not Change.UNCHANGED \
                    or item.path in self.forced:
                continue  # an edit on either side: copied as any edit, the names differ in case
            new_path = str(PurePosixPath(item.path).with_name(names.decode(PurePosixPath(item.win).name)))
            if new_path == item.path or self.state.get(new_path) or self.trees[NFS].stat(new_path):
                continue
            old = Item(item.path, entry.win, item.nfs, None)
            new = Item(new_path, item.win, None, item.windows)
            if not entry.is_dir and not self._confirm(WINDOWS, old, new):
                self.forced.add(item.path)  # edited too, unseen by size and mtime: a copy
                continue
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
        other = other_side(side)
        entry = self.state.get(old.path)
        assert entry is not None
        if side == NFS:
            # A new name differing only in case takes the old one's place, not an alternative.
            parent = self.win_path(parent_of(new.path)) if parent_of(new.path) else ""
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
            for marked in (self.racy, self.forced):  # an edit unseen yet moves with its file
                if path in marked:
                    marked.discard(path)
                    marked.add(new + suffix)
            self._name_notice(new + suffix, new_win + win_suffix)
