r"""Whatever the agent deletes or replaces, on either side, is kept first, for a while.

Each side has a versions folder, never synced and out of reach of what it keeps:

- the Windows side's is ``.filesim/versions/<nas>/`` of the data root (``C:\simulator-data``),
  beside the NAS folders, not in them: a NAS folder deleted in Explorer does not take it along;
- the NFS side's is ``versions/`` in the agent's state folder: never in the export (NFS clients
  would see and could change it).

A kept file is ``<folder>/<stem>~<UTC yyyymmddThhmmssZ><suffix>`` there (moved, hard-linked or
copied, whichever the filesystems allow), with a line in ``index.jsonl`` (``path``, ``version``,
``at``, ``size``) once it is really kept. Versions older than the retention days go, and the
oldest go first while all of them take more than the size cap. ``invoke versions`` lists them and
``invoke restore`` brings one back (the Windows side's from the tester's machine, the NFS side's
through the agent).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from filesim.sync.names import MAX_COMPONENT, MAX_PATH
from filesim.sync.status import HIDDEN
from filesim.sync.tree import close_quietly, open_regular

#: The Windows side's versions of NAS ``<nas>`` are in ``<data root>/.filesim/versions/<nas>``.
FOLDER = f"{HIDDEN}/versions"
INDEX = "index.jsonl"
#: Versions whose natural name would not fit go here, named by a hash.
FLAT = "_long"
PRUNE_EVERY = 600.0
#: Errors of a hard link that mean "not here": then the version is moved or copied.
NO_LINK = (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.EOPNOTSUPP, errno.ENOSYS,
           errno.EACCES)


@dataclass(frozen=True)
class Version:
    """One kept file: its path on its side, where it is kept, when, how big."""

    path: str
    version: str
    at: float
    size: int

    @property
    def stamp(self) -> str:
        """When it was kept, as UTC ``yyyy-mm-dd hh:mm:ss``."""
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.at))


@dataclass(frozen=True)
class Kept:
    """A version being kept for a replace: ``commit`` once the replace is done, else ``undo``."""

    commit: Callable[[], None]
    undo: Callable[[], None]


def share_versions(share: Path) -> Path:
    """The Windows-side versions folder of the NAS folder ``share`` (beside it, not in it)."""
    return share.parent / FOLDER / share.name


def nfs_versions(state: Path) -> Path:
    """The NFS-side versions folder of the agent whose state folder is ``state``."""
    return state / "versions"


class Versions:
    """One side's versions folder.

    ``walk_dir(rel, create=True)`` opens a folder below it without following symlinks (the
    agent passes a Tree's); without one, plain paths are used (the tasks).
    ``root_length`` is the length of the folder's path as Windows names it (0: not Windows).
    """

    def __init__(self, folder: Path, *, days: float = 7, max_bytes: int = 2**30,
                 root_length: int = 0, walk_dir: Callable[..., int] | None = None,
                 share: Path | None = None):
        self.folder = folder
        #: The folder the versions were kept from, where ``restore`` puts them back.
        self.share = share
        self.days = days
        self.max_bytes = max_bytes
        self.root_length = root_length
        self.walk_dir = walk_dir
        self._last_prune = 0.0

    @classmethod
    def of_share(cls, share: Path, **options: object) -> Versions:
        """The Windows-side versions of the NAS folder ``share``."""
        return cls(share_versions(share), share=share, **options)  # type: ignore[arg-type]

    def keep(self, dir_fd: int, name: str, rel: str, *, replacing: bool = False) -> Kept | None:
        """Keep the file ``name`` (at ``rel``, in the folder ``dir_fd``) before it goes.

        A file about to be deleted is moved here (or copied, then removed, across
        filesystems); one about to be renamed over (``replacing``) stays in place and a hard
        link or a copy is kept, so readers never find the name missing: the index line is
        then written by ``commit`` once the replace is done, and ``undo`` removes the copy.
        """
        size = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
        at = time.time()
        version = self._name_for(rel, at)
        parent, base = version.rsplit("/", 1) if "/" in version else ("", version)
        target_dir = self._open(parent)
        try:
            base = self._place(dir_fd, name, target_dir, base, replacing)
        finally:
            close_quietly(target_dir)
        kept = Version(rel, f"{parent}/{base}" if parent else base, at, size)
        if not replacing:
            self._append(kept)
            self.prune_if_due()
            return None

        def commit() -> None:
            self._append(kept)
            self.prune_if_due()

        def undo() -> None:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / kept.version).unlink()
        return Kept(commit, undo)

    @staticmethod
    def _place(dir_fd: int, name: str, target_dir: int, base: str, replacing: bool) -> str:
        """Link, move or copy ``name`` to a free name ``base`` (or ``base-2``...); the name used."""
        for attempt in range(2, 100):
            try:
                os.link(name, base, src_dir_fd=dir_fd, dst_dir_fd=target_dir, follow_symlinks=False)
                if not replacing:
                    os.unlink(name, dir_fd=dir_fd)
                return base
            except FileExistsError:
                base = _numbered(base, attempt)
                continue
            except OSError as exc:
                if exc.errno not in NO_LINK:
                    raise
            # No hard links (9p to NTFS, or another filesystem): a move or a copy, never over
            # an existing version.
            try:
                os.stat(base, dir_fd=target_dir, follow_symlinks=False)
                base = _numbered(base, attempt)
                continue
            except FileNotFoundError:
                pass
            if not replacing:
                try:
                    os.rename(name, base, src_dir_fd=dir_fd, dst_dir_fd=target_dir)
                    return base
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
            _copy_at(dir_fd, name, target_dir, base)
            if not replacing:
                os.unlink(name, dir_fd=dir_fd)
            return base
        raise FileExistsError(errno.EEXIST, "no free version name", base)

    def _name_for(self, rel: str, at: float) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))
        path = PurePosixPath(rel)
        name = f"{path.stem}~{stamp}{path.suffix}" if path.suffix else f"{path.name}~{stamp}"
        natural = str(path.with_name(name))
        too_long = self.root_length and self.root_length + len(natural) + 1 > MAX_PATH
        if not too_long and len(os.fsencode(name)) <= MAX_COMPONENT - 4:  # room for "-99"
            return natural
        digest = hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return f"{FLAT}/{digest}~{stamp}{path.suffix[:16]}"

    def _open(self, rel: str) -> int:
        if self.walk_dir is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            return self.walk_dir(rel, create=True)
        folder = self.folder / rel
        folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)

    def _append(self, version: Version) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / INDEX, "a", encoding="utf-8", errors="surrogateescape") as index:
            index.write(_line(version))

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

    def of(self, path: str, *, folded: bool = True) -> list[Version]:
        r"""The versions of one path (``/`` or ``\``), oldest first; by case unless ``folded`` is off."""
        key = str.casefold if folded else str
        wanted = key(_relative(path))
        return [v for v in self.all() if key(v.path) == wanted]

    def within(self, path: str, *, folded: bool = True) -> list[Version]:
        r"""Every version of the files at or below ``path`` (``/`` or ``\``; "" or "." for all)."""
        key = str.casefold if folded else str
        prefix = key(_relative(path))
        return [v for v in self.all()
                if not prefix or key(v.path) == prefix or key(v.path).startswith(prefix + "/")]

    def under(self, path: str, at: float | None = None, *, folded: bool = True) -> list[Version]:
        """The latest version (kept at or before ``at``) of each file at or below ``path``."""
        key = str.casefold if folded else str
        latest = {key(v.path): v for v in self.within(path, folded=folded)
                  if at is None or v.at <= at}
        return sorted(latest.values(), key=lambda v: v.path)

    def restore(self, path: str, at: float | None = None) -> Version:
        """Put a kept version back at ``path`` in the share (plain paths: the tasks' side).

        The latest version, or the latest kept at or before ``at``; LookupError if there is
        none. A file there now is kept first; the version arrives whole (a temp file in the
        versions folder, renamed into place).
        """
        assert self.share is not None, "restore needs the share the versions came from"
        candidates = [v for v in self.of(path) if at is None or v.at <= at]
        if not candidates:
            raise LookupError(path)
        chosen = candidates[-1]
        target = self.share / chosen.path
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            temp = f".restore-{os.getpid()}-{time.time_ns()}"
            parent, _, base = chosen.version.rpartition("/")
            source = os.open(self.folder / parent, os.O_RDONLY | os.O_DIRECTORY) if parent else staging
            try:
                _copy_at(source, base, staging, temp)
            finally:
                if source != staging:
                    close_quietly(source)
            into = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                kept = None
                if target.is_file():
                    kept = self.keep(into, target.name, chosen.path, replacing=True)
                try:
                    os.rename(temp, target.name, src_dir_fd=staging, dst_dir_fd=into)
                except OSError:
                    if kept is not None:
                        kept.undo()
                    raise
                if kept is not None:
                    kept.commit()
            finally:
                close_quietly(into)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=staging)
            close_quietly(staging)
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
        total = sum(v.size for v in keep)
        while keep and total > self.max_bytes:
            total -= keep.pop(0).size
        gone = [v for v in versions if v not in keep]
        for version in gone:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / version.version).unlink()
        if gone:
            temp = self.folder / f".{INDEX}.tmp"
            temp.write_text("".join(_line(v) for v in keep), encoding="utf-8",
                            errors="surrogateescape")
            os.replace(temp, self.folder / INDEX)
        return len(gone)


def _relative(path: str) -> str:
    r"""A path as the index has it: ``/`` separators, no leading ``./`` or ``/``; "." is ""."""
    path = path.replace("\\", "/").strip("/")
    while path == "." or path.startswith("./"):
        path = path[2:]
    return path


def _line(version: Version) -> str:
    return json.dumps({"path": version.path, "version": version.version, "at": version.at,
                       "size": version.size}, ensure_ascii=True) + "\n"


def _numbered(base: str, attempt: int) -> str:
    stem, dot, suffix = base.rpartition(".")
    return f"{stem}-{attempt}.{suffix}" if dot and stem else f"{base}-{attempt}"


def _copy_at(src_dir: int, name: str, dst_dir: int, target: str) -> None:
    """Copy one file between two open folders (no symlink followed, no FIFO waited on)."""
    src = open_regular(name, src_dir)
    try:
        st = os.fstat(src)
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644,
                      dir_fd=dst_dir)
        try:
            while chunk := os.read(src, 1 << 20):
                os.write(out, chunk)
            with contextlib.suppress(OSError):  # 9p ignores it; a version keeps its date elsewhere
                os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(out)
    finally:
        close_quietly(src)
