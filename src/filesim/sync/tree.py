"""One side of the sync: a folder tree, scanned cheaply and written safely."""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NamedTuple

MARKER = ".filesim-share"
TEMP_PREFIX = ".filesim-tmp."
#: Files that `invoke probe-windows` writes to prove the share is live; never synced.
PROBE_PREFIX = ".filesim-probe."
CHUNK = 1 << 20
# getattr: the toolkit imports this module on Windows too (the agent itself runs on Linux).
DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class Sig(NamedTuple):
    """What a scan sees of an entry: enough to notice a change without reading it.

    A tuple, so building and comparing millions of them (a poll every interval) stays cheap.
    """

    is_dir: bool
    size: int
    mtime_ns: int


DIR_SIG = Sig(True, 0, 0)


class Poll(NamedTuple):
    """What changed on one side against the agreed signatures."""

    changed: dict[str, Sig]
    deleted: set[str]
    total: int


class SideUnavailable(Exception):
    """The tree cannot be read at all (e.g. the Windows share's mount died)."""


class SourceChanged(Exception):
    """The source changed while it was being copied; the copy was discarded."""


class DestinationChanged(Exception):
    """The destination changed since it was last seen; it was left alone."""


IGNORED_PREFIXES = (TEMP_PREFIX, PROBE_PREFIX)


def ignored(name: str) -> bool:
    """Entries the agent never syncs: its own temp files and probe files."""
    return name.startswith(IGNORED_PREFIXES)


class Tree:
    """A folder tree addressed by POSIX paths relative to its root."""

    def __init__(self, root: Path, name: str, *, file_mode: int | None = None,
                 dir_mode: int | None = None):
        self.root = root
        self.name = name
        self.file_mode = file_mode
        self.dir_mode = dir_mode

    def path(self, rel: str) -> Path:
        """The absolute path of ``rel``."""
        return self.root / rel

    def stat(self, rel: str) -> Sig | None:
        """The signature of one entry, or None if it does not exist (or is not a file/dir)."""
        try:
            st = os.lstat(self.path(rel))
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        except OSError as exc:
            raise SideUnavailable(f"{self.name}: {exc}") from exc
        return _sig(st)

    def scan(self, rel: str = "") -> dict[str, Sig]:
        """Signatures of every entry below ``rel`` (not ``rel`` itself), recursively."""
        found: dict[str, Sig] = {}
        for directory, names, fd in self._directories(rel):
            prefix = f"{directory}/" if directory else ""
            for name in names:
                sig = _stat_at(fd, name)
                if sig is not None:
                    found[prefix + name] = sig
        return found

    def poll(self, agreed: Mapping[str, Sig]) -> Poll:
        """Compare the whole tree with ``agreed`` signatures; only differences are kept.

        This runs every interval over the Windows share, so it is written for speed: a
        matching entry costs one stat relative to its open directory (cheaper than
        DirEntry.stat) and no allocation kept; the cyclic GC is paused meanwhile. Deletions
        are looked for only when fewer agreed paths were seen than there are.
        """
        changed: dict[str, Sig] = {}
        matched = total = 0
        get, stat_at = agreed.get, os.stat
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for directory, names, fd in self._directories(""):
                prefix = f"{directory}/" if directory else ""
                for name in names:
                    try:
                        st = stat_at(name, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    kind = st.st_mode & 0o170000
                    path = prefix + name
                    known = get(path)
                    if kind == 0o100000:
                        total += 1
                        if (known is not None and known[2] == st.st_mtime_ns
                                and known[1] == st.st_size and not known[0]):
                            matched += 1
                        else:
                            changed[path] = Sig(False, st.st_size, st.st_mtime_ns)
                    elif kind == 0o040000:
                        total += 1
                        if known is DIR_SIG or known == DIR_SIG:
                            matched += 1
                        else:
                            changed[path] = DIR_SIG
        finally:
            if gc_was_enabled:
                gc.enable()
        deleted: set[str] = set()
        if matched + sum(1 for p in changed if p in agreed) < len(agreed):
            seen_all = {f"{d}/{n}" if d else n for d, names, _ in self._directories("")
                        for n in names}
            deleted = agreed.keys() - seen_all
        return Poll(changed, deleted, total)

    def _directories(self, rel: str) -> Iterator[tuple[str, list[str], int]]:
        """(folder, entry names, open fd of the folder) for ``rel`` and every folder below it.

        Names exclude temp and probe files and, at the root, the marker. The fd is valid
        until the next item is asked for.
        """
        stack = [rel]
        while stack:
            current = stack.pop()
            try:
                fd = os.open(self.path(current) if current else self.root, DIR_FLAGS)
            except (FileNotFoundError, NotADirectoryError):
                if not current:
                    raise SideUnavailable(f"{self.name}: root {self.root} is missing") from None
                continue
            except OSError as exc:
                raise SideUnavailable(f"{self.name}: {exc}") from exc
            try:
                with os.scandir(fd) as entries:
                    names = []
                    for entry in entries:
                        name = entry.name
                        if name.startswith(IGNORED_PREFIXES) or (not current and name == MARKER):
                            continue
                        names.append(name)
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(f"{current}/{name}" if current else name)
                yield current, names, fd
            except OSError as exc:
                raise SideUnavailable(f"{self.name}: {exc}") from exc
            finally:
                os.close(fd)

    def usage(self) -> dict[str, int] | None:
        """Bytes used and the size of the filesystem holding the tree (None if unreadable)."""
        try:
            st = os.statvfs(self.root)
        except OSError:
            return None
        return {"used": (st.f_blocks - st.f_bfree) * st.f_frsize, "size": st.f_blocks * st.f_frsize}

    def has_marker(self) -> bool:
        """Whether the share marker is at the root (the share is really mounted)."""
        try:
            return os.path.isfile(self.root / MARKER)
        except OSError:
            return False

    def remove_temp_files(self) -> int:
        """Delete temp files a killed agent left behind; return how many."""
        removed = 0
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                if name.startswith(TEMP_PREFIX):
                    try:
                        os.unlink(os.path.join(dirpath, name))
                        removed += 1
                    except FileNotFoundError:
                        pass
        return removed

    def copy_from(self, source: Tree, rel: str, expected: Sig, *, dest: str | None = None,
                  dest_expected: Sig | bool | None = None) -> Sig:
        """Copy ``rel`` of ``source`` to ``dest`` (default ``rel``) here; return the new signature.

        The copy goes to a hidden temp file in the destination folder and is renamed into place
        only if the source still matches ``expected`` and the destination still matches
        ``dest_expected`` (None: must not exist; True: anything).
        """
        dest = dest or rel
        target = self.path(dest)
        parent = str(PurePosixPath(dest).parent)
        if parent != ".":
            self.mkdir(parent)
        temp = target.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}.{target.name}"[:255])
        try:
            with open(source.path(rel), "rb") as src, open(temp, "xb") as out:
                _copy_data(src, out)
            if self.file_mode is not None:
                os.chmod(temp, self.file_mode)
            if source.stat(rel) != expected:
                raise SourceChanged(rel)
            if dest_expected is not True and self.stat(dest) != dest_expected:
                raise DestinationChanged(dest)
            os.replace(temp, target)
        except BaseException:
            _unlink_quietly(temp)
            raise
        sig = self.stat(dest)
        if sig is None:
            raise DestinationChanged(dest)
        return sig

    def hash(self, rel: str) -> str:
        """sha256 of one file's content."""
        digest = hashlib.sha256()
        with open(self.path(rel), "rb") as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def mkdir(self, rel: str) -> Sig:
        """Create a directory (and its parents) with ``dir_mode``; return its signature."""
        missing = []
        path = self.path(rel)
        while path != self.root and not path.is_dir():
            missing.append(path)
            path = path.parent
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                if not folder.is_dir():
                    raise
                continue
            if self.dir_mode is not None:
                os.chmod(folder, self.dir_mode)
        sig = self.stat(rel)
        assert sig is not None
        return sig

    def rename(self, rel: str, new: str) -> None:
        """Rename an entry within this tree, never replacing an existing one."""
        if self.stat(new) is not None:
            raise FileExistsError(new)
        os.rename(self.path(rel), self.path(new))

    def remove(self, rel: str, expected: Sig) -> bool:
        """Delete a file, or an empty directory, if it still matches ``expected``; True if gone."""
        current = self.stat(rel)
        if current is None:
            return True
        if current != expected and not (current.is_dir and expected.is_dir):
            raise DestinationChanged(rel)
        try:
            if current.is_dir:
                os.rmdir(self.path(rel))
            else:
                os.unlink(self.path(rel))
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            if exc.errno != errno.ENOENT:
                raise
        return True

    def is_empty(self) -> bool:
        """Whether the root holds nothing but the marker and temp files."""
        try:
            with os.scandir(self.root) as entries:
                return not any(not ignored(e.name) and e.name != MARKER for e in entries)
        except OSError as exc:
            raise SideUnavailable(f"{self.name}: {exc}") from exc


def is_filesystem_root(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    """Whether ``path`` is where a whole filesystem is mounted (not a folder bound from one).

    An NFS export must be: ganesha serves any handle of a filesystem it exports.
    """
    target = os.path.realpath(path)
    found = False
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        # id, parent, major:minor, root within the filesystem, mount point, ...
        if len(fields) > 4 and _unescape_mount(fields[4]) == target:
            found = _unescape_mount(fields[3]) == "/"  # a later mount hides an earlier one
    return found


def _unescape_mount(field: str) -> str:
    """Mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _copy_data(src: BinaryIO, out: BinaryIO) -> None:
    """Copy file contents in the kernel (as cp does), or by reading where that is refused."""
    try:
        while os.copy_file_range(src.fileno(), out.fileno(), CHUNK * 64):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.EIO):
            raise
    src.seek(0)
    out.seek(0)
    out.truncate()
    while chunk := src.read(CHUNK):
        out.write(chunk)


def _stat_at(fd: int, name: str) -> Sig | None:
    try:
        return _sig(os.stat(name, dir_fd=fd, follow_symlinks=False))
    except FileNotFoundError:
        return None


def _sig(st: os.stat_result) -> Sig | None:
    if stat.S_ISDIR(st.st_mode):
        return DIR_SIG
    if stat.S_ISREG(st.st_mode):
        return Sig(False, st.st_size, st.st_mtime_ns)
    return None


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
