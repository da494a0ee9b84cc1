"""What the agent deletes or replaces on the Windows side is kept first, for a while.

A kept file is moved (never copied) into ``.filesim/versions/`` of the NAS's Windows folder as
``<folder>/<stem>~<UTC yyyymmddThhmmssZ><suffix>``, and a line is appended to ``index.jsonl``
there (``path``, ``version``, ``at``, ``size``). Versions older than the retention days go, and
the oldest go first while all of them take more than the size cap. The folder is never synced.
The agent keeps versions; ``invoke versions`` lists them and ``invoke restore`` brings one back
(both read this module on the tester's machine).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from filesim.sync.names import MAX_PATH
from filesim.sync.status import HIDDEN

FOLDER = f"{HIDDEN}/versions"
INDEX = "index.jsonl"
#: Versions whose natural name would not fit Windows' path length go here, named by a hash.
FLAT = "_long"
PRUNE_EVERY = 600.0


@dataclass(frozen=True)
class Version:
    """One kept file."""

    path: str
    version: str
    at: float
    size: int

    @property
    def stamp(self) -> str:
        """When it was kept, as UTC ``yyyy-mm-dd hh:mm:ss``."""
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.at))


class Versions:
    """The versions folder of one Windows share.

    ``walk_dir(rel, create=True)`` opens a folder of the share without following symlinks
    (the agent's Windows tree provides it); without one, plain paths are used (the tasks).
    """

    def __init__(self, share: Path, *, days: float = 7, max_bytes: int = 2**30,
                 root_length: int = len("C:\\simulator-data\\nas-backup"),
                 walk_dir: Callable[..., int] | None = None):
        self.share = share
        self.days = days
        self.max_bytes = max_bytes
        self.root_length = root_length
        self.walk_dir = walk_dir
        self._last_prune = 0.0

    @property
    def folder(self) -> Path:
        """Where the versions are."""
        return self.share / FOLDER

    def keep(self, dir_fd: int, name: str, rel: str, *,
             replacing: bool = False) -> Callable[[], None]:
        """Keep the file ``name`` (at ``rel``) in the versions folder; return how to undo that.

        It is moved there, unless it is about to be renamed over (``replacing``): then it stays
        in place and a hard link, or where there are none a copy, is kept, so readers never find
        the name missing. The undo removes such a link or copy (the replace failed).
        """
        size = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
        at = time.time()
        version = self._name_for(rel, at)
        parent, base = version.rsplit("/", 1) if "/" in version else ("", version)
        target_dir = self._open(f"{FOLDER}/{parent}" if parent else FOLDER)
        try:
            for attempt in range(2, 100):
                try:
                    os.link(name, base, src_dir_fd=dir_fd, dst_dir_fd=target_dir,
                            follow_symlinks=False)
                    if not replacing:
                        os.unlink(name, dir_fd=dir_fd)
                    break
                except FileExistsError:
                    stem, dot, suffix = base.rpartition(".")
                    base = f"{stem}-{attempt}.{suffix}" if dot and stem else f"{base}-{attempt}"
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK,
                                         errno.EOPNOTSUPP, errno.ENOSYS, errno.EACCES):
                        raise
                    # No hard links (9p to NTFS): a copy, or a rename that refuses to replace.
                    with contextlib.suppress(FileNotFoundError):
                        os.stat(base, dir_fd=target_dir, follow_symlinks=False)
                        stem, dot, suffix = base.rpartition(".")
                        base = f"{stem}-{attempt}.{suffix}" if dot and stem else f"{base}-{attempt}"
                        continue
                    if replacing:
                        _copy_at(dir_fd, name, target_dir, base)
                    else:
                        os.rename(name, base, src_dir_fd=dir_fd, dst_dir_fd=target_dir)
                    break
        finally:
            os.close(target_dir)
        kept = f"{parent}/{base}" if parent else base
        self._append(Version(rel, kept, at, size))
        self.prune_if_due()

        def undo() -> None:
            if replacing:
                with contextlib.suppress(FileNotFoundError):
                    (self.folder / kept).unlink()  # all() leaves out index lines without a file
        return undo

    def _name_for(self, rel: str, at: float) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))
        path = PurePosixPath(rel)
        name = f"{path.stem}~{stamp}{path.suffix}" if path.suffix else f"{path.name}~{stamp}"
        natural = str(path.with_name(name))
        if self.root_length + len(FOLDER) + len(natural) + 2 <= MAX_PATH:
            return natural
        digest = hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return f"{FLAT}/{digest}~{stamp}{path.suffix[:16]}"

    def _open(self, rel: str) -> int:
        if self.walk_dir is not None:
            return self.walk_dir(rel, create=True)
        folder = self.share / rel
        folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)

    def _append(self, version: Version) -> None:
        line = json.dumps({"path": version.path, "version": version.version, "at": version.at,
                           "size": version.size}, ensure_ascii=True) + "\n"
        with open(self.folder / INDEX, "a", encoding="utf-8", errors="surrogateescape") as index:
            index.write(line)

    def all(self) -> list[Version]:
        """Every kept version that still exists, oldest first."""
        try:
            lines = (self.folder / INDEX).read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            return []
        found = []
        for line in lines.splitlines():
            try:
                item = json.loads(line)
                version = Version(item["path"], item["version"], item["at"], item["size"])
            except (ValueError, KeyError, TypeError):
                continue
            if (self.folder / version.version).is_file():
                found.append(version)
        return sorted(found, key=lambda v: v.at)

    def of(self, path: str) -> list[Version]:
        r"""The versions of one path (as on the Windows side, ``/`` or ``\``), oldest first."""
        wanted = path.replace("\\", "/").strip("/").casefold()
        return [v for v in self.all() if v.path.casefold() == wanted]

    def restore(self, path: str, at: float | None = None) -> Version:
        """Put a kept version back at ``path`` in the share; a file there now is kept first.

        The latest version, or the latest kept at or before ``at``; LookupError if there is none.
        """
        candidates = [v for v in self.of(path) if at is None or v.at <= at]
        if not candidates:
            raise LookupError(path)
        chosen = candidates[-1]
        target = self.share / chosen.path
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".filesim-tmp.restore.{target.name}")
        shutil.copyfile(self.folder / chosen.version, temp)
        if target.is_file():
            parent = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                self.keep(parent, target.name, chosen.path)
            finally:
                os.close(parent)
        os.replace(temp, target)
        return chosen

    def prune_if_due(self) -> int:
        """Prune at most every ``PRUNE_EVERY`` seconds; return how many versions went."""
        now = time.monotonic()
        if now - self._last_prune < PRUNE_EVERY:
            return 0
        self._last_prune = now
        return self.prune()

    def prune(self) -> int:
        """Remove versions past the retention days, then the oldest beyond the size cap."""
        versions = self.all()
        cutoff = time.time() - self.days * 86400
        keep = [v for v in versions if v.at >= cutoff]
        while keep and sum(v.size for v in keep) > self.max_bytes:
            keep.pop(0)
        gone = [v for v in versions if v not in keep]
        for version in gone:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / version.version).unlink()
        if gone:
            temp = self.folder / f".{INDEX}.tmp"
            temp.write_text("".join(json.dumps({"path": v.path, "version": v.version, "at": v.at,
                                                "size": v.size}, ensure_ascii=True) + "\n"
                                    for v in keep), encoding="utf-8", errors="surrogateescape")
            os.replace(temp, self.folder / INDEX)
        return len(gone)


def _copy_at(src_dir: int, name: str, dst_dir: int, target: str) -> None:
    """Copy one file between two open folders (no symlink followed), creating ``target``."""
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644,
                      dir_fd=dst_dir)
        try:
            while chunk := os.read(src, 1 << 20):
                os.write(out, chunk)
        finally:
            os.close(out)
    finally:
        os.close(src)
