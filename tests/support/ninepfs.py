"""A FUSE passthrough that behaves like minikube's 9p share of a Windows folder.

Quirks reproduced (field-facts §1 and §6): writes made in the backing folder raise no inotify
event under the mount; mtimes are whole seconds; setting mtimes is silently ignored; the inode
number derives from the file size. Tests write into the backing folder to play the Windows
tester while the agent only sees the mount.

With ``--ntfs`` it also behaves like NTFS behind minikube's 9p server on Windows:
- names are case-insensitive and case-preserving (a lookup finds ``Report.csv`` for
  ``report.csv``; creating either when the other exists opens the existing one);
- names Windows refuses (``<>:"|?*\\``, control characters, device names such as ``CON`` or
  ``aux.txt``, bytes that are not UTF-8) fail with EINVAL, and a trailing dot or space is
  stripped as Win32 does (so a careless write lands on another name);
- a path of 260 characters or more below the Windows root fails with ENAMETOOLONG;
- a read-only file (``chmod 444``) cannot be written, replaced or deleted (EACCES);
- files listed in the ``--locks`` file (one path per line, relative, like an open Excel file)
  cannot be written, replaced or deleted, and nothing can be created in listed folders (EACCES);
  a folder listed as ``!path`` has a deny ACL: it shows in its parent, but listing it or
  looking up anything in it fails (EACCES).

With ``--drop-rate P`` every listing leaves out each entry with probability P, as minikube's
9p server has been reported to for big folders; lookups by name still find them.
With ``--stats FILE`` it writes, a few times a second while they change, how many operations
of each kind reached it and how many bytes were read per file (JSON). ``--delay-ms MS`` makes
every operation take that much longer, as a round trip through a VM's network does (9p).

Run: python ninepfs.py BACKING MOUNTPOINT [--ntfs] [--locks FILE] [--root-length N] [--drop-rate P]
(foreground; unmount with fusermount3 -u)
"""

from __future__ import annotations

import argparse
import collections
import errno
import json
import os
import random
import re
import threading
import time

import mfusepy as fuse

INVALID = re.compile(r'[<>:"|?*\\\x00-\x1f]')
#: Win32 takes a device name before the first dot, trailing spaces ignored (``con .txt``).
RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]) *(\.|$)", re.IGNORECASE)
MAX_PATH = 259


def windows_can_hold(name: str) -> bool:
    """Whether NTFS holds ``name`` as it is (no character it refuses, no device name, no trailing dot)."""
    return bool(name) and not INVALID.search(name) and not RESERVED.match(name) \
        and name[-1] not in ". "

#: ``C:\simulator-data``: the mount is the data root, as in the pods.
DATA_ROOT_LENGTH = 17
#: The operations this share implements (each a round trip to Windows over 9p).
OPERATIONS = ("access", "chmod", "chown", "create", "flush", "fsync", "getattr", "link", "mkdir",
              "open", "opendir", "read", "readdir", "release", "rename", "rmdir", "statfs",
              "symlink", "truncate", "unlink", "utimens", "write")


class NinePLike(fuse.Operations):
    """Passthrough operations with 9p's quirks (and NTFS's, with ``ntfs``)."""

    use_ns = True

    def __init__(self, root: str, *, ntfs: bool = False, locks: str | None = None,
                 root_length: int = DATA_ROOT_LENGTH, drop_rate: float = 0.0,
                 stats: str | None = None, delay_ms: float = 0.0):
        self.root = root
        self.ntfs = ntfs
        self.locks = locks
        self.root_length = root_length
        self.drop_rate = drop_rate
        self.random = random.Random()
        self.stats = stats
        self.ops: collections.Counter[str] = collections.Counter()
        self.read_bytes: collections.Counter[str] = collections.Counter()
        self.delay = delay_ms / 1000
        if stats or delay_ms:
            for name in OPERATIONS:
                setattr(self, name, self._counted(name, getattr(self, name)))
        if stats:
            threading.Thread(target=self._write_stats, daemon=True).start()

    def _counted(self, name, operation):
        def counted(*args, **kwargs):
            self.ops[name] += 1
            if self.delay:
                time.sleep(self.delay)
            return operation(*args, **kwargs)
        return counted

    def _write_stats(self) -> None:
        written = None
        while True:
            now = (dict(self.ops), dict(self.read_bytes))
            if now != written:
                temp = f"{self.stats}.tmp"
                with open(temp, "w") as out:
                    json.dump({"ops": now[0], "read_bytes": now[1]}, out)
                os.replace(temp, self.stats)
                written = now
            time.sleep(0.1)

    # -- NTFS names --------------------------------------------------------------------------

    def _full(self, path: str) -> str:
        """The backing path: on NTFS each component found case-insensitively."""
        if not self.ntfs:
            return os.path.join(self.root, path.lstrip("/"))
        current = self.root
        for part in (p for p in path.split("/") if p):
            current = os.path.join(current, self._match(current, part) or part)
        return current

    @staticmethod
    def _match(folder: str, name: str) -> str | None:
        try:
            names = os.listdir(folder)
        except OSError:
            return None
        if name in names:
            return name
        key = name.casefold()
        return next((n for n in names if n.casefold() == key), None)

    def _new(self, path: str) -> str:
        """The backing path of an entry to create: checked against Windows' naming rules."""
        if not self.ntfs:
            return self._full(path)
        parent, _, name = path.rstrip("/").rpartition("/")
        stripped = name.rstrip(". ")
        if not stripped or INVALID.search(stripped) or RESERVED.match(stripped) or any(
                0xDC80 <= ord(c) <= 0xDCFF for c in stripped):
            raise fuse.FuseOSError(errno.EINVAL)
        if self.root_length + 1 + len(f"{parent}/{stripped}".lstrip("/")) > MAX_PATH:
            raise fuse.FuseOSError(errno.ENAMETOOLONG)
        self._check_unlocked(parent, folder=True)
        folder = self._full(parent)
        return os.path.join(folder, self._match(folder, stripped) or stripped)

    def _listed(self) -> set[str]:
        if not self.ntfs or not self.locks:
            return set()
        try:
            with open(self.locks) as listing:
                return {line.strip().strip("/").casefold() for line in listing if line.strip()}
        except FileNotFoundError:
            return set()

    def _check_unlocked(self, path: str, *, folder: bool = False) -> None:
        """EACCES for a locked file (or for creating in a locked folder), as Windows refuses."""
        if path.strip("/").casefold() in self._listed():
            raise fuse.FuseOSError(errno.EACCES)

    def _check_allowed(self, path: str, *, inside: bool) -> None:
        """EACCES below a folder with a deny ACL (``inside``: the folder itself is listed too)."""
        denied = [line[1:].strip("/") for line in self._listed() if line.startswith("!")]
        key = path.strip("/").casefold()
        for folder in denied:
            if (inside and key == folder) or key.startswith(folder + "/"):
                raise fuse.FuseOSError(errno.EACCES)

    def _check_writable(self, path: str) -> None:
        """EACCES for a read-only or locked file on NTFS."""
        if not self.ntfs:
            return
        self._check_unlocked(path)
        try:
            if not os.lstat(self._full(path)).st_mode & 0o200:
                raise fuse.FuseOSError(errno.EACCES)
        except FileNotFoundError:
            pass

    # -- operations --------------------------------------------------------------------------

    def getattr(self, path, fh=None):
        self._check_allowed(path, inside=False)
        st = os.lstat(self._full(path))
        attrs = {key: getattr(st, key) for key in (
            "st_mode", "st_nlink", "st_uid", "st_gid", "st_size")}
        if os.path.isdir(self._full(path)):
            attrs["st_size"] = 0  # so every directory has inode 2, as over 9p
        seconds = int(st.st_mtime) * 1_000_000_000
        attrs.update(st_mtime=seconds, st_ctime=seconds, st_atime=seconds,
                     st_ino=(attrs["st_size"] & 0xFFFFFFFF) + 2)
        return attrs

    def opendir(self, path):
        self._check_allowed(path, inside=True)
        return 0

    def readdir(self, path, fh):
        self._check_allowed(path, inside=True)
        # With use_ino, an entry's inode comes from here, and readdir(3) hides inode 0.
        entries = [(".", NinePLike.getattr(self, path), 0), ("..", {"st_mode": 0o40755, "st_ino": 2}, 0)]
        for name in os.listdir(self._full(path)):
            if self.drop_rate and self.random.random() < self.drop_rate:
                continue  # an incomplete listing: the entry is still there by name
            try:
                # The class's getattr: one kernel readdir, not a counted getattr per entry.
                entries.append((name, NinePLike.getattr(self, os.path.join(path, name)), 0))
            except FileNotFoundError:
                continue
        return entries

    def access(self, path, amode):
        if not os.access(self._full(path), amode):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def open(self, path, flags):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC):
            self._check_writable(path)
        return os.open(self._full(path), flags)

    def create(self, path, mode, fi=None):
        target = self._new(path)
        if os.path.exists(target):
            self._check_writable(path)
        return os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def read(self, path, size, offset, fh):
        data = os.pread(fh, size, offset)
        self.read_bytes[path.lstrip("/")] += len(data)
        return data

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        self._check_writable(path)
        os.truncate(self._full(path), length)
        return 0

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        os.fsync(fh)
        return 0

    def release(self, path, fh):
        os.close(fh)
        return 0

    def unlink(self, path):
        self._check_writable(path)
        os.unlink(self._full(path))
        return 0

    def mkdir(self, path, mode):
        target = self._new(path)
        if self.ntfs and os.path.lexists(target):
            raise fuse.FuseOSError(errno.EEXIST)
        os.mkdir(target, mode)
        return 0

    def rmdir(self, path):
        os.rmdir(self._full(path))
        return 0

    def rename(self, old, new):
        source = self._full(old)
        if not self.ntfs:
            os.replace(source, self._full(new))
            return 0
        self._check_writable(old)
        target = self._new(new)  # an existing entry differing in case only is the same name
        if target == source:  # a change of case only: the entry takes the new spelling
            spelled = new.rstrip("/").rsplit("/", 1)[-1].rstrip(". ")
            os.rename(source, os.path.join(os.path.dirname(source), spelled))
            return 0
        if os.path.lexists(target):
            self._check_writable(new)
        os.replace(source, target)
        return 0

    def chmod(self, path, mode):
        if self.ntfs:  # only the read-only attribute exists
            full = self._full(path)
            current = os.lstat(full).st_mode
            os.chmod(full, (current | 0o200) if mode & 0o200 else (current & ~0o222))
        return 0

    def chown(self, path, uid, gid):
        return 0

    def link(self, target, source):
        raise fuse.FuseOSError(errno.EPERM)  # 9p to NTFS: no hard links

    def symlink(self, target, source):
        raise fuse.FuseOSError(errno.EPERM)

    def utimens(self, path, times=None):
        return 0  # minikube's Windows 9p server ignores requests to set times

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        return {key: getattr(st, key) for key in (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
            "f_flag", "f_frsize", "f_namemax")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("backing")
    parser.add_argument("mountpoint")
    parser.add_argument("--ntfs", action="store_true")
    parser.add_argument("--locks")
    parser.add_argument("--root-length", type=int, default=DATA_ROOT_LENGTH)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--stats")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    operations = NinePLike(os.path.abspath(args.backing), ntfs=args.ntfs, locks=args.locks,
                           root_length=args.root_length, drop_rate=args.drop_rate, stats=args.stats,
                           delay_ms=args.delay_ms)
    fuse.FUSE(operations, args.mountpoint, foreground=True, nothreads=False,
              allow_other=True, use_ino=True, direct_io=True, attr_timeout=0, entry_timeout=0,
              negative_timeout=0)


if __name__ == "__main__":
    main()
