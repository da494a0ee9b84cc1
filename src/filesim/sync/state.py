"""The last agreed version of every path, persisted crash-safely in SQLite.

A path is known by its NFS name (stored as bytes, so names that are not UTF-8 survive) and
carries the Windows name it has there when that differs (the encoded form, or a case-collision
alternative).

In memory each path costs one small tuple: the two sides' signatures packed into one integer
each (a poll compares one int per entry), the Windows name only where it differs, the content
hash as bytes. At 100,000 paths that is ~35 MiB where tuples of fields took ~90.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from filesim.sync.names import case_key
from filesim.sync.tree import KIND_MASK, Kind, Sig, pack, unpack

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
BY_AGENT = 1


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
    """The agreed entries in memory (compact), written through to SQLite (WAL) in transactions."""

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
        #: path → (nfs signature, Windows signature, Windows name if it differs, hash, flags)
        self._rec: dict[str, tuple[int, int, str | None, bytes | None, int]] = {}
        #: Windows name → path, for the paths whose Windows name differs from their name.
        self._alias: dict[str, str] = {}
        #: Case key → path, for Windows names a case-insensitive side would not find as they are.
        self._folded: dict[str, str] = {}
        #: folder → the paths directly in it.
        self._children: dict[str, set[str]] = {}
        self._files = 0
        for row in self.db.execute("SELECT * FROM agreed"):
            self._index(os.fsdecode(row[0]), Entry(row[1], row[2], row[3], row[4], row[5], row[6],
                                                   row[7], row[8], bool(row[9]), bool(row[10])))
        self._pending: dict[str, Entry | None] = {}

    def _legacy(self) -> bool:
        return bool(self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='entries'").fetchone())

    def __len__(self) -> int:
        return len(self._rec)

    def __contains__(self, path: object) -> bool:
        return path in self._rec

    def paths(self) -> list[str]:
        """Every agreed path."""
        return list(self._rec)

    def win_names(self) -> list[str]:
        """Every agreed path's Windows name."""
        return [rec[2] or path for path, rec in self._rec.items()]

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
            self._folded = {}
            for path, rec in self._rec.items():
                self._fold(rec[2] or path, path)

    def _fold(self, win: str, path: str) -> None:
        if self.case_insensitive and case_key(win) != win:
            self._folded[case_key(win)] = path

    # -- reading -------------------------------------------------------------------------------

    def get(self, path: str) -> Entry | None:
        """The agreed entry of ``path``, if any."""
        rec = self._rec.get(path)
        if rec is None:
            return None
        nfs, win = unpack(rec[0]), unpack(rec[1])
        return Entry(rec[2] or path, nfs.kind, nfs.size, nfs.mtime_ns, nfs.ino, nfs.ctime_ns,
                     win.mtime_ns, rec[3].hex() if rec[3] is not None else None,
                     bool(rec[4] & BY_AGENT), nfs.readonly)

    def win_of(self, path: str) -> str | None:
        """The agreed Windows name of ``path``."""
        rec = self._rec.get(path)
        return None if rec is None else rec[2] or path

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` is an agreed folder."""
        rec = self._rec.get(path)
        return rec is not None and rec[0] & KIND_MASK == Kind.DIR

    def nfs_key(self, path: str) -> int | None:
        """The packed NFS signature agreed for ``path`` (what an NFS poll compares)."""
        rec = self._rec.get(path)
        return None if rec is None else rec[0]

    def win_key_of(self, win: str) -> int | None:
        """The packed Windows signature agreed at the Windows name ``win`` (a Windows poll)."""
        path = self._alias.get(win, win)
        rec = self._rec.get(path)
        if rec is None or (rec[2] or path) != win:
            return None
        return rec[1]

    def nfs_sig(self, path: str) -> Sig | None:
        """The NFS signature agreed for ``path``."""
        key = self.nfs_key(path)
        return None if key is None else unpack(key)

    def win_sig(self, win: str) -> Sig | None:
        """The Windows signature agreed at the Windows name ``win``."""
        key = self.win_key_of(win)
        return None if key is None else unpack(key)

    def path_of_win(self, win: str) -> str | None:
        """The NFS path whose Windows name is ``win`` (compared as the Windows side does)."""
        if self.win_key_of(win) is not None:
            return self._alias.get(win, win)
        if not self.case_insensitive:
            return None
        key = case_key(win)
        path = self._folded.get(key) or self._alias.get(key, key)
        rec = self._rec.get(path)
        return path if rec is not None and case_key(rec[2] or path) == key else None

    def under(self, directory: str) -> Iterator[str]:
        """Paths recorded below ``directory`` (parents before children)."""
        stack = [directory]
        while stack:
            for child in sorted(self._children.get(stack.pop(), ())):
                yield child
                if child in self._children:
                    stack.append(child)

    def files(self) -> int:
        """How many files (not folders) are tracked."""
        return self._files

    def files_with_content(self) -> list[tuple[str, int]]:
        """(path, size) of every agreed file with a recorded hash (what the sweep checks)."""
        return [(p, unpack(r[0]).size) for p, r in self._rec.items() if r[3] is not None]

    def recent_on_windows(self, since_ns: int) -> list[str]:
        """Files whose Windows mtime was agreed after ``since_ns`` (racy: verified by content)."""
        return [p for p, r in self._rec.items()
                if r[0] & KIND_MASK != Kind.DIR and unpack(r[1]).mtime_ns > since_ns]

    # -- writing -------------------------------------------------------------------------------

    def _index(self, path: str, entry: Entry) -> None:
        old = self._rec.get(path)
        if old is not None:
            self._unindex(path, old)
        win = None if entry.win == path else entry.win
        nfs = entry.nfs_sig()
        self._rec[path] = (pack(nfs), pack(entry.win_sig()), win,
                           bytes.fromhex(entry.sha) if entry.sha else None,
                           BY_AGENT if entry.by_agent else 0)
        if win is not None:
            self._alias[win] = path
        self._fold(entry.win, path)
        parent = path.rpartition("/")[0]
        self._children.setdefault(parent, set()).add(path)
        self._files += not nfs.is_dir

    def _unindex(self, path: str, rec: tuple[int, int, str | None, bytes | None, int]) -> None:
        if rec[2] is not None and self._alias.get(rec[2]) == path:
            del self._alias[rec[2]]
        if self._folded.get(case_key(rec[2] or path)) == path:
            del self._folded[case_key(rec[2] or path)]
        siblings = self._children.get(path.rpartition("/")[0])
        if siblings is not None:
            siblings.discard(path)
            if not siblings:
                del self._children[path.rpartition("/")[0]]
        self._files -= rec[0] & KIND_MASK != Kind.DIR

    def put(self, path: str, entry: Entry) -> None:
        """Record an agreed version; written at the next commit."""
        self._index(path, entry)
        self._pending[path] = entry
        if len(self._pending) >= 500:
            self.commit()

    def drop(self, path: str) -> None:
        """Forget a path both sides no longer have."""
        rec = self._rec.pop(path, None)
        if rec is not None:
            self._unindex(path, rec)
            self._pending[path] = None

    def reset(self) -> None:
        """Forget every agreement (a new share: both sides are merged, nothing deleted)."""
        for path in list(self._rec):
            self.drop(path)
        self.commit()

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
