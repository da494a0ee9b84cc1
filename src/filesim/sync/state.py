"""The last agreed version of every path, persisted crash-safely in SQLite.

A path is known by its NFS name (stored as bytes, so names that are not UTF-8 survive) and
carries the Windows name it has there when that differs (the encoded form, or a case-collision
alternative).

SQLite holds the whole entries; memory holds only what a poll compares, per path one integer
made of a 64-bit hash of each side's agreed signature (and whether it is a folder). A poll
tells "unchanged" by one look-up; anything else reads the entry from SQLite. At 100,000 paths
that is ~16 MiB, where whole entries in memory took ~90.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from filesim.sync.names import case_key
from filesim.sync.tree import Kind, Sig, sig_hash

SCHEMA_VERSION = "3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agreed (
    path BLOB PRIMARY KEY,
    win TEXT NOT NULL,
    win_folded TEXT NOT NULL,
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
CREATE INDEX IF NOT EXISTS agreed_win_folded ON agreed (win_folded);
CREATE INDEX IF NOT EXISTS agreed_by_inode ON agreed (nfs_ino);
CREATE INDEX IF NOT EXISTS agreed_by_size_and_win_mtime ON agreed (size, win_mtime);
"""
COLUMNS = "win, kind, size, nfs_mtime, nfs_ino, nfs_ctime, win_mtime, sha, by_agent, readonly"
HASH_BITS = 64
HASH_MASK = (1 << HASH_BITS) - 1
COMMIT_EVERY = 500
#: A new Windows file is compared with at most this many agreed files of its size and mtime
#: (those of its name first: a moved folder's files keep theirs).
RENAME_CANDIDATES = 5
#: Entries one batch keeps read back from SQLite at most (~6 MB).
BATCH_CACHE = 20_000


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


def _key(entry: Entry) -> int:
    """What memory keeps of an entry: both sides' signature hashes and the folder bit."""
    return (sig_hash(entry.nfs_sig()) << HASH_BITS | sig_hash(entry.win_sig())) << 1 | entry.is_dir


def _row(path: str, e: Entry) -> tuple[object, ...]:
    return (os.fsencode(path), e.win, case_key(e.win), e.kind, e.size, e.nfs_mtime, e.nfs_ino,
            e.nfs_ctime, e.win_mtime, e.sha, int(e.by_agent), int(e.readonly))


def _entry(row: tuple[object, ...]) -> Entry:
    win, kind, size, nfs_mtime, nfs_ino, nfs_ctime, win_mtime, sha, by_agent, readonly = row
    return Entry(win, kind, size, nfs_mtime, nfs_ino, nfs_ctime, win_mtime, sha,  # type: ignore[arg-type]
                 bool(by_agent), bool(readonly))


def _range(directory: str) -> tuple[bytes, bytes]:
    """SQLite bounds of the paths below ``directory`` ('/' + 1 is '0')."""
    prefix = os.fsencode(directory)
    return prefix + b"/", prefix + b"0"


class State:
    """Agreed entries in SQLite (WAL, written in transactions), their signature hashes in memory.

    Changes are visible at once (``put``/``drop``) and reach SQLite at the next ``commit``.
    """

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(directory / "state.sqlite3", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        for table in self._tables() - {"meta"}:
            if self._schema() != SCHEMA_VERSION:
                self.db.execute(f"DROP TABLE {table}")  # an older agent's: start over, merging both
        self.db.executescript(SCHEMA)
        self.meta = dict(self.db.execute("SELECT key, value FROM meta"))
        self.set_meta("schema", SCHEMA_VERSION)
        self.case_insensitive = False
        #: path → signature hashes and folder bit (see :func:`_key`).
        self._keys: dict[str, int] = {}
        #: path → Windows name, and back, for the paths whose Windows name differs.
        self._wins: dict[str, str] = {}
        self._alias: dict[str, str] = {}
        self._files = 0
        #: Changes not yet in SQLite (None: dropped), and their Windows names by case.
        self._pending: dict[str, Entry | None] = {}
        self._pending_folded: dict[str, str] = {}
        #: Entries read back from SQLite while a batch is open (see :meth:`batch`).
        self._read: dict[str, Entry] = {}
        self._batches = 0
        for row in self.db.execute(f"SELECT path, {COLUMNS} FROM agreed"):
            self._index(os.fsdecode(row[0]), _entry(row[1:]))

    def _tables(self) -> set[str]:
        return {name for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _schema(self) -> str | None:
        if "meta" not in self._tables():
            return None
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        return row[0] if row else None

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, path: object) -> bool:
        return path in self._keys

    def set_meta(self, key: str, value: str) -> None:
        """Record a value about the whole state (schema, share identity) at once."""
        self.meta[key] = value
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def temp_token(self) -> str:
        """The token in this agent's temp file names (made once, kept with the state).

        Temp files are removed at start only if they carry it: a user's file named like one
        is synced like any other.
        """
        token = self.meta.get("temp_token")
        if token is None:
            token = secrets.token_hex(4)
            self.set_meta("temp_token", token)
        return token

    def win_key(self, win: str) -> str:
        """How the Windows side compares names."""
        return case_key(win) if self.case_insensitive else win

    def use_case_insensitive(self, value: bool) -> None:
        """Find Windows names by case (or not), as the Windows side was found to compare them."""
        self.case_insensitive = value

    # -- what polls compare ----------------------------------------------------------------

    def nfs_hash(self, path: str) -> int | None:
        """The hash of the NFS signature agreed for ``path`` (:func:`tree.sig_hash`)."""
        key = self._keys.get(path)
        return None if key is None else key >> (HASH_BITS + 1)

    def win_hash(self, win: str) -> int | None:
        """The hash of the Windows signature agreed at the Windows name ``win``."""
        path = self._alias.get(win)
        if path is None:
            if win in self._wins:
                return None  # an NFS path whose Windows name is another
            path = win
        key = self._keys.get(path)
        return None if key is None else key >> 1 & HASH_MASK

    def paths(self) -> list[str]:
        """Every agreed path."""
        return list(self._keys)

    def win_names(self) -> list[str]:
        """Every agreed path's Windows name."""
        wins = self._wins
        return [wins.get(path, path) for path in self._keys]

    # -- reading ---------------------------------------------------------------------------

    def get(self, path: str) -> Entry | None:
        """The agreed entry of ``path``, if any."""
        if path in self._pending:
            return self._pending[path]
        if path not in self._keys:
            return None
        if path in self._read:
            return self._read[path]
        row = self.db.execute(f"SELECT {COLUMNS} FROM agreed WHERE path = ?",
                              (os.fsencode(path),)).fetchone()
        entry = None if row is None else _entry(row)
        if self._batches and entry is not None:
            if len(self._read) >= BATCH_CACHE:
                self._read.clear()  # a huge batch: memory first
            self._read[path] = entry
        return entry

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Keep what is read back from SQLite until the end: a batch asks for each path often."""
        self._batches += 1
        try:
            yield
        finally:
            self._batches -= 1
            if not self._batches:
                self._read.clear()

    def win_of(self, path: str) -> str | None:
        """The agreed Windows name of ``path``."""
        return self._wins.get(path, path) if path in self._keys else None

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` is an agreed folder."""
        return bool(self._keys.get(path, 0) & 1)

    def nfs_sig(self, path: str) -> Sig | None:
        """The NFS signature agreed for ``path``."""
        entry = self.get(path)
        return None if entry is None else entry.nfs_sig()

    def win_sig(self, win: str) -> Sig | None:
        """The Windows signature agreed at the Windows name ``win``."""
        path = self._alias.get(win, win)
        entry = self.get(path) if self.win_of(path) == win else None
        return None if entry is None else entry.win_sig()

    def path_of_win(self, win: str) -> str | None:
        """The NFS path whose Windows name is ``win`` (compared as the Windows side does)."""
        path = self._alias.get(win, win)
        if self.win_of(path) == win:
            return path
        if not self.case_insensitive:
            return None
        folded = case_key(win)
        if folded in self._pending_folded:
            return self._pending_folded[folded]
        for (stored,) in self.db.execute("SELECT path FROM agreed WHERE win_folded = ?", (folded,)):
            path = os.fsdecode(stored)
            if path not in self._pending:
                return path
        return None

    def under(self, directory: str) -> list[str]:
        """Paths recorded below the agreed folder ``directory``, parents before children."""
        if not self.is_dir(directory):
            return []
        self.commit()
        low, high = _range(directory)
        return [os.fsdecode(p) for (p,) in self.db.execute(
            "SELECT path FROM agreed WHERE path >= ? AND path < ? ORDER BY path", (low, high))]

    def renamed_from(self, side: str, sig: Sig, name: str = "") -> list[str]:
        """Agreed paths a new entry with ``sig`` on ``side`` may have been renamed from.

        NFS: the same inode (and size and mtime, for a file); Windows (fake inodes): a file of
        the same size and mtime, those with the same ``name`` (a moved folder's files) first.
        Folders on Windows have no such key (their files do).
        """
        self.commit()
        if side == "nfs":
            rows = self.db.execute(f"SELECT path, {COLUMNS} FROM agreed WHERE nfs_ino = ?", (sig.ino,))
            return [os.fsdecode(p) for p, *row in rows
                    if (e := _entry(tuple(row))).kind == sig.kind
                    and (e.is_dir or (e.size, e.nfs_mtime) == (sig.size, sig.mtime_ns))]
        if sig.is_dir:
            return []
        query = ("SELECT path, win FROM agreed WHERE size = ? AND win_mtime = ? AND kind = ? "
                 "ORDER BY (win = ? OR substr(win, -?) = ?) DESC LIMIT ?")
        rows = self.db.execute(query, (sig.size, sig.mtime_ns, int(Kind.FILE), name, len(name) + 1,
                                       f"/{name}", RENAME_CANDIDATES))
        found = [(os.fsdecode(p), win) for p, win in rows]
        return [p for p, win in found if win == name] + [p for p, win in found if win != name]

    def files(self) -> int:
        """How many files (not folders) are tracked."""
        return self._files

    def content_total(self, floor: int) -> tuple[int, int]:
        """(files with a recorded hash, their total size counting each as at least ``floor``)."""
        self.commit()
        count, total = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(MAX(size, ?)), 0) FROM agreed WHERE sha IS NOT NULL",
            (floor,)).fetchone()
        return count, total

    def with_content(self, after: str | None, limit: int) -> list[tuple[str, int]]:
        """(path, size) of up to ``limit`` files with a recorded hash, in path order after ``after``."""
        self.commit()
        rows = self.db.execute(
            "SELECT path, size FROM agreed WHERE sha IS NOT NULL AND path > ? ORDER BY path LIMIT ?",
            (os.fsencode(after) if after is not None else b"", limit))
        return [(os.fsdecode(p), size) for p, size in rows]

    def recent_on_windows(self, since_ns: int, until_ns: int) -> list[str]:
        """Files agreed with a Windows mtime between the two (racy: verified by content)."""
        self.commit()
        return [os.fsdecode(p) for (p,) in self.db.execute(
            "SELECT path FROM agreed WHERE kind != ? AND win_mtime > ? AND win_mtime < ?",
            (int(Kind.DIR), since_ns, until_ns))]

    # -- writing ---------------------------------------------------------------------------

    def _index(self, path: str, entry: Entry) -> None:
        self._unindex(path)
        self._keys[path] = _key(entry)
        if entry.win != path:
            self._wins[path] = entry.win
            self._alias[entry.win] = path
        self._files += not entry.is_dir

    def _unindex(self, path: str) -> None:
        key = self._keys.pop(path, None)
        if key is None:
            return
        win = self._wins.pop(path, None)
        if win is not None and self._alias.get(win) == path:
            del self._alias[win]
        self._files -= not key & 1

    def put(self, path: str, entry: Entry) -> None:
        """Record an agreed version; written at the next commit."""
        self._index(path, entry)
        self._read.pop(path, None)
        self._pending[path] = entry
        self._pending_folded[case_key(entry.win)] = path
        if len(self._pending) >= COMMIT_EVERY:
            self.commit()

    def drop(self, path: str) -> None:
        """Forget a path both sides no longer have."""
        if path in self._keys:
            win = self.win_of(path)
            self._unindex(path)
            self._read.pop(path, None)
            self._pending[path] = None
            if win is not None and self._pending_folded.get(case_key(win)) == path:
                del self._pending_folded[case_key(win)]

    def reset(self) -> None:
        """Forget every agreement (a new share: both sides are merged, nothing deleted)."""
        for path in list(self._keys):
            self.drop(path)
        self.commit()

    def commit(self) -> None:
        """Write pending changes in one transaction."""
        if not self._pending:
            return
        rows = [_row(p, e) for p, e in self._pending.items() if e is not None]
        gone = [(os.fsencode(p),) for p, e in self._pending.items() if e is None]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO agreed VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            self.db.executemany("DELETE FROM agreed WHERE path = ?", gone)
        self._pending.clear()
        self._pending_folded.clear()

    def close(self) -> None:
        """Commit and close the database."""
        self.commit()
        self.db.close()

