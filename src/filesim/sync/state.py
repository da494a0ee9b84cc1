"""The last agreed version of every path, persisted crash-safely in SQLite.

A path is known by its NFS name (stored as bytes, so names that are not UTF-8 survive) and
carries the Windows name it has there (the encoded form, or a case-collision alternative).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from filesim.sync.names import case_key
from filesim.sync.tree import Kind, Sig

SCHEMA_VERSION = "2"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agreed (
    path BLOB PRIMARY KEY,
    win TEXT NOT NULL,
    kind INTEGER NOT NULL,
    size INTEGER NOT NULL,
    nfs_mtime INTEGER NOT NULL,
    nfs_ino INTEGER NOT NULL,
    nfs_ctime INTEGER NOT NULL,
    win_mtime INTEGER NOT NULL,
    sha TEXT,
    by_agent INTEGER NOT NULL,
    readonly INTEGER NOT NULL
);
"""


class Entry(NamedTuple):
    """Both sides agreed on this version of a path.

    ``by_agent`` records that the agent itself wrote the Windows copy (to-windows mode may
    only replace or delete such copies).
    """

    win: str
    kind: int
    size: int
    nfs_mtime: int
    nfs_ino: int
    nfs_ctime: int
    win_mtime: int
    sha: str | None
    by_agent: bool
    readonly: bool

    @property
    def is_dir(self) -> bool:
        """A folder."""
        return self.kind == Kind.DIR

    def nfs_sig(self) -> Sig:
        """The NFS side's signature when the version was agreed."""
        if self.kind == Kind.DIR:
            return Sig(Kind.DIR, 0, 0, self.nfs_ino, 0, False)
        return Sig(self.kind, self.size, self.nfs_mtime, self.nfs_ino, self.nfs_ctime, self.readonly)

    def win_sig(self) -> Sig:
        """The Windows side's signature when the version was agreed."""
        if self.kind == Kind.DIR:
            return Sig(Kind.DIR, 0, 0, 0, 0, False)
        return Sig(self.kind, self.size, self.win_mtime, 0, 0, self.readonly)


def agreed_entry(win: str, nfs: Sig, windows: Sig, sha: str | None, *, by_agent: bool) -> Entry:
    """The entry recording that ``nfs`` and ``windows`` hold the same version."""
    if nfs.is_dir:
        return Entry(win, Kind.DIR, 0, 0, nfs.ino, 0, 0, None, by_agent, False)
    return Entry(win, nfs.kind, nfs.size, nfs.mtime_ns, nfs.ino, nfs.ctime_ns, windows.mtime_ns, sha,
                 by_agent, nfs.readonly)


class State:
    """An in-memory map of NFS path → Entry, written through to SQLite (WAL) in transactions.

    ``nfs_sigs`` and ``win_sigs`` map each side's path to the signature it had when agreed, so
    a poll compares a whole scan with them by dictionary look-ups; ``by_win`` finds a path by
    its Windows name (by case when the Windows side ignores case).
    """

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(directory / "state.sqlite3", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        if self._legacy():
            self.db.execute("DROP TABLE entries")  # an older agent's: start over, merging both sides
        self.db.executescript(SCHEMA)
        self.meta = dict(self.db.execute("SELECT key, value FROM meta"))
        if self.meta.get("schema") != SCHEMA_VERSION:
            self.db.execute("DELETE FROM agreed")
            self.set_meta("schema", SCHEMA_VERSION)
        self.case_insensitive = False
        self.entries: dict[str, Entry] = {}
        self.nfs_sigs: dict[str, Sig] = {}
        self.win_sigs: dict[str, Sig] = {}
        self.by_win: dict[str, str] = {}
        for row in self.db.execute("SELECT * FROM agreed"):
            path = os.fsdecode(row[0])
            self._index(path, Entry(row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                                    bool(row[9]), bool(row[10])))
        self._pending: dict[str, Entry | None] = {}

    def _legacy(self) -> bool:
        return bool(self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='entries'").fetchone())

    def __len__(self) -> int:
        return len(self.entries)

    def set_meta(self, key: str, value: str) -> None:
        """Record a value about the whole state (schema, share identity) at once."""
        self.meta[key] = value
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def win_key(self, win: str) -> str:
        """How the Windows side compares names."""
        return case_key(win) if self.case_insensitive else win

    def use_case_insensitive(self, value: bool) -> None:
        """Index Windows names by case (or not), as the Windows side was found to compare them."""
        if value != self.case_insensitive:
            self.case_insensitive = value
            self.by_win = {self.win_key(e.win): p for p, e in self.entries.items()}

    def get(self, path: str) -> Entry | None:
        """The agreed entry of ``path``, if any."""
        return self.entries.get(path)

    def path_of_win(self, win: str) -> str | None:
        """The NFS path whose Windows name is ``win`` (compared as the Windows side does)."""
        return self.by_win.get(self.win_key(win))

    def _index(self, path: str, entry: Entry) -> None:
        old = self.entries.get(path)
        if old is not None and old.win != entry.win:
            self.win_sigs.pop(old.win, None)
            self.by_win.pop(self.win_key(old.win), None)
        self.entries[path] = entry
        self.nfs_sigs[path] = entry.nfs_sig()
        self.win_sigs[entry.win] = entry.win_sig()
        self.by_win[self.win_key(entry.win)] = path

    def put(self, path: str, entry: Entry) -> None:
        """Record an agreed version; written at the next commit."""
        self._index(path, entry)
        self._pending[path] = entry
        if len(self._pending) >= 500:
            self.commit()

    def drop(self, path: str) -> None:
        """Forget a path both sides no longer have."""
        entry = self.entries.pop(path, None)
        if entry is not None:
            self.nfs_sigs.pop(path, None)
            self.win_sigs.pop(entry.win, None)
            if self.by_win.get(self.win_key(entry.win)) == path:
                del self.by_win[self.win_key(entry.win)]
            self._pending[path] = None

    def reset(self) -> None:
        """Forget every agreement (a new share: both sides are merged, nothing deleted)."""
        for path in list(self.entries):
            self.drop(path)
        self.commit()

    def under(self, directory: str) -> Iterator[str]:
        """Paths recorded below ``directory``."""
        prefix = directory + "/"
        return (p for p in list(self.entries) if p.startswith(prefix))

    def files(self) -> int:
        """How many files (not folders) are tracked."""
        return sum(1 for e in self.entries.values() if e.kind != Kind.DIR)

    def commit(self) -> None:
        """Write pending changes in one transaction."""
        if not self._pending:
            return
        rows = [(os.fsencode(p), e.win, e.kind, e.size, e.nfs_mtime, e.nfs_ino, e.nfs_ctime,
                 e.win_mtime, e.sha, int(e.by_agent), int(e.readonly))
                for p, e in self._pending.items() if e is not None]
        gone = [(os.fsencode(p),) for p, e in self._pending.items() if e is None]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO agreed VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            self.db.executemany("DELETE FROM agreed WHERE path = ?", gone)
        self._pending.clear()

    def close(self) -> None:
        """Commit and close the database."""
        self.commit()
        self.db.close()
