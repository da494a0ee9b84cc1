"""Windows names of NFS paths and back, in one batch: encodings, case collisions, notices."""

from __future__ import annotations

from filesim.sync import names
from filesim.sync.plan import NFS, WINDOWS


class WindowsPaths:
    """The reconciler's part that names paths on each side (a mixin: see Reconciler)."""

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


    def _name_notice(self, path: str, win: str) -> None:
        """Say when a file has another name on one side than the other would give it."""
        top = "/" not in path
        shown, nfs_name = win.rpartition("/")[2], path.rpartition("/")[2]
        natural, decoded = names.encode(nfs_name, top=top), names.decode(shown, top=top)
        if shown == natural or decoded == nfs_name:
            self.problems.clear_notice(path)
        elif shown.casefold() == natural.casefold():
            self.problems.notice(WINDOWS, path, f"shown on Windows as {shown!r}, on NFS as "
                                 f"{names.display(nfs_name)!r}: a rename in case only met an edit "
                                 "and was not carried over (Windows takes both for one name)")
        elif names.alternative_of(nfs_name, "name") == decoded:
            self.problems.notice(NFS, path, f"named {names.display(nfs_name)!r} on NFS: the "
                                 f"Windows name {shown!r} stands for {names.display(decoded)!r}, "
                                 "which another Windows name there has too")
        else:
            self.problems.notice(WINDOWS, path, f"shown on Windows as {shown!r}: another name "
                                 f"there differs from {natural!r} only in case")
