"""What a batch of the reconciler deals in: a path on both sides, pending changes, the report."""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import NamedTuple

from filesim.sync import names
from filesim.sync.plan import NFS, WINDOWS
from filesim.sync.tree import Sig

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

    def deletion(self) -> bool:
        """Whether a side was seen without the path (a deletion waiting for its second look)."""
        return (self.nfs is not None and self.nfs.sig is None) or (
            self.windows is not None and self.windows.sig is None)

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


def canonical(win: str) -> bool:
    """Whether a Windows path is what its NFS path encodes to (plain ASCII names always are)."""
    return win.isascii() or names.encode_path(names.decode_path(win)) == win


def name_of(path: str) -> str:
    """``a/b/c`` → ``c``."""
    return path.rpartition("/")[2]


def ancestors(path: str) -> list[str]:
    """``a/b/c`` → ``a/b``, ``a``."""
    found = []
    while "/" in path:
        path = path.rpartition("/")[0]
        found.append(path)
    return found


def parent_of(path: str) -> str:
    """``a/b/c`` → ``a/b``; a top-level name → "" (paths are relative, '/'-separated)."""
    return path.rpartition("/")[0]


def other_side(side: str) -> str:
    """The side that is not ``side``."""
    return WINDOWS if side == NFS else NFS
