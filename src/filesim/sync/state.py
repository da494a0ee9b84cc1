"""The last agreed version of every path, persisted crash-safely in SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from filesim.sync.tree import DIR_SIG, Sig

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    path TEXT PRIMARY KEY,
    is_dir INTEGER NOT NULL,
    size INTEGER NOT NULL,
    nfs_mtime_ns INTEGER NOT NULL,
    windows_mtime_ns INTEGER NOT NULL,
    sha256 TEXT,
    windows_by_agent INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class Entry:
    """Both sides agreed on this version of a path.

    ``windows_by_agent`` records that the agent itself wrote the Windows copy (to-windows mode
    may only replace or delete such copies).
    """

    is_dir: bool
    size: int
    nfs_mtime_ns: int
    windows_mtime_ns: int
    sha256: str | None
    windows_by_agent: bool

    def sig(self, side: str) -> Sig:
        """The signature each side had when the version was agreed."""
        if self.is_dir:
            return DIR_SIG
        return Sig(False, self.size, self.nfs_mtime_ns if side == "nfs" else self.windows_mtime_ns)


def entry_from(nfs: Sig, windows: Sig, sha256: str | None, *, by_agent: bool) -> Entry:
    """The entry recording that ``nfs`` and ``windows`` hold the same version."""
    return Entry(nfs.is_dir, nfs.size, nfs.mtime_ns, windows.mtime_ns, sha256, by_agent)


class State:
    """An in-memory map of path → Entry, written through to SQLite (WAL) in transactions.

    ``sigs[side]`` maps each path to the signature that side had when agreed, so a poll
    compares a whole scan against it with dictionary operations.
    """

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(directory / "state.sqlite3", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(SCHEMA)
        self.entries: dict[str, Entry] = {
            path: Entry(bool(d), size, nm, wm, h, bool(a))
            for path, d, size, nm, wm, h, a in self.db.execute("SELECT * FROM entries")
        }
        self.sigs: dict[str, dict[str, Sig]] = {
            side: {p: e.sig(side) for p, e in self.entries.items()} for side in ("nfs", "windows")}
        self._pending: dict[str, Entry | None] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, path: str) -> Entry | None:
        """The agreed entry of ``path``, if any."""
        return self.entries.get(path)

    def put(self, path: str, entry: Entry) -> None:
        """Record an agreed version; written at the next commit."""
        self.entries[path] = entry
        for side, sigs in self.sigs.items():
            sigs[path] = entry.sig(side)
        self._pending[path] = entry
        if len(self._pending) >= 500:
            self.commit()

    def drop(self, path: str) -> None:
        """Forget a path both sides no longer have."""
        if self.entries.pop(path, None) is not None:
            for sigs in self.sigs.values():
                del sigs[path]
            self._pending[path] = None

    def under(self, directory: str) -> Iterator[str]:
        """Paths recorded below ``directory``."""
        prefix = directory + "/"
        return (p for p in list(self.entries) if p.startswith(prefix))

    def files(self) -> int:
        """How many files (not directories) are tracked."""
        return sum(1 for e in self.entries.values() if not e.is_dir)

    def commit(self) -> None:
        """Write pending changes in one transaction."""
        if not self._pending:
            return
        rows: Iterable[tuple[object, ...]] = [
            (p, int(e.is_dir), e.size, e.nfs_mtime_ns, e.windows_mtime_ns, e.sha256,
             int(e.windows_by_agent))
            for p, e in self._pending.items() if e is not None
        ]
        gone = [(p,) for p, e in self._pending.items() if e is None]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?)", rows)
            self.db.executemany("DELETE FROM entries WHERE path = ?", gone)
        self._pending.clear()

    def close(self) -> None:
        """Commit and close the database."""
        self.commit()
        self.db.close()
