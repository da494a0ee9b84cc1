"""A FUSE passthrough that behaves like minikube's 9p share of a Windows folder.

Quirks reproduced (field-facts §1 and §6): writes made in the backing folder raise no inotify
event under the mount; mtimes are whole seconds; setting mtimes is silently ignored; the inode
number derives from the file size. Tests write into the backing folder to play the Windows
tester while the agent only sees the mount.

Run: python ninepfs.py BACKING MOUNTPOINT   (foreground; unmount with fusermount3 -u)
"""

from __future__ import annotations

import errno
import os
import sys

import mfusepy as fuse


class NinePLike(fuse.Operations):
    """Passthrough operations with 9p's quirks."""

    use_ns = True

    def __init__(self, root: str):
        self.root = root

    def _full(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def getattr(self, path, fh=None):
        st = os.lstat(self._full(path))
        attrs = {key: getattr(st, key) for key in (
            "st_mode", "st_nlink", "st_uid", "st_gid", "st_size")}
        if os.path.isdir(self._full(path)):
            attrs["st_size"] = 0  # so every directory has inode 2, as over 9p
        seconds = int(st.st_mtime) * 1_000_000_000
        attrs.update(st_mtime=seconds, st_ctime=seconds, st_atime=seconds,
                     st_ino=(attrs["st_size"] & 0xFFFFFFFF) + 2)
        return attrs

    def readdir(self, path, fh):
        # With use_ino, an entry's inode comes from here, and readdir(3) hides inode 0.
        entries = [(".", self.getattr(path), 0), ("..", {"st_mode": 0o40755, "st_ino": 2}, 0)]
        for name in os.listdir(self._full(path)):
            try:
                entries.append((name, self.getattr(os.path.join(path, name)), 0))
            except FileNotFoundError:
                continue
        return entries

    def access(self, path, amode):
        if not os.access(self._full(path), amode):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def open(self, path, flags):
        return os.open(self._full(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self._full(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
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
        os.unlink(self._full(path))
        return 0

    def mkdir(self, path, mode):
        os.mkdir(self._full(path), mode)
        return 0

    def rmdir(self, path):
        os.rmdir(self._full(path))
        return 0

    def rename(self, old, new):
        os.replace(self._full(old), self._full(new))
        return 0

    def chmod(self, path, mode):
        return 0

    def chown(self, path, uid, gid):
        return 0

    def utimens(self, path, times=None):
        return 0  # minikube's Windows 9p server ignores requests to set times

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        return {key: getattr(st, key) for key in (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
            "f_flag", "f_frsize", "f_namemax")}


def main() -> None:
    backing, mountpoint = sys.argv[1:3]
    fuse.FUSE(NinePLike(os.path.abspath(backing)), mountpoint, foreground=True, nothreads=False,
              allow_other=True, use_ino=True, direct_io=True, attr_timeout=0, entry_timeout=0,
              negative_timeout=0)


if __name__ == "__main__":
    main()
