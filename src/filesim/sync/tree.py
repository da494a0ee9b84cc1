"""One side of the sync: a folder tree, listed cheaply, written safely, never through a symlink.

Every operation walks directory file descriptors with ``O_NOFOLLOW``: NFS clients are untrusted
and a symlink they plant (``reports -> /``) must never steer where the agent reads or writes.
Symlinks and special files are reported (by their kind), never followed or copied, and files
are opened without blocking (a FIFO swapped in for a file cannot hold the agent) and checked
on the open descriptor. A folder the agent may not list is named (``unreadable``), never taken
for an empty one.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, NamedTuple

from filesim.nas.faults import BALLAST, is_ballast
from filesim.sync.names import case_key
from filesim.sync.status import HIDDEN, MARKER

#: The agent's temp files are ``.filesim-tmp.<token>.<random>.<name>``: the token is the
#: agent's own (kept in its state), so a user's file of a similar name is synced like any other.
TEMP_PREFIX = ".filesim-tmp."
#: Any agent's temp file name (for those who do not know the token: the host watcher, tests).
TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{8}\.")
CHUNK = 1 << 20
#: What a hole reads as, for its hash (made once: a copy of a small file made it each time).
_ZEROS = memoryview(bytes(CHUNK))
#: Walks of one poll at most, when folders keep moving while it walks.
POLL_ATTEMPTS = 3
#: A poll with a sink hands differences over in chunks of this many.
POLL_CHUNK = 2000
#: Folders a batch keeps open for reading at most (then it starts over).
FOLDER_CACHE = 256
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: No O_NOATIME: on files of other uids (NFS clients) it needs CAP_FOWNER, which the agent lacks.
#: O_NONBLOCK: a FIFO opened for reading would wait for a writer (regular files ignore it).
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
#: What the agent keeps at the root of the Windows side (compared as Windows does, by case).
ROOT_RESERVED = (MARKER.casefold(), HIDDEN.casefold())
#: Errors that say "you may not look here", not "nothing is here".
DENIED = (errno.EACCES, errno.EPERM)


def close_quietly(fd: int) -> None:
    """Close a folder, or a file only read: no written data is at stake.

    Linux releases the descriptor even when close reports an error; a written file's close
    is checked where it is written.
    """
    with contextlib.suppress(OSError):
        os.close(fd)


class Kind(IntEnum):
    """What an entry is."""

    FILE = 1
    DIR = 2
    SYMLINK = 3
    OTHER = 4  # sockets, fifos, devices


class Sig(NamedTuple):
    """What a scan sees of an entry: enough to notice a change without reading it.

    ``ino`` and ``ctime_ns`` are 0 on the Windows side, whose 9p server derives inode numbers
    from the size; ``ctime_ns`` catches edits on the NFS side that keep size and mtime.
    """

    kind: int
    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int
    readonly: bool

    @property
    def is_dir(self) -> bool:
        """A folder."""
        return self.kind == Kind.DIR

    @property
    def is_file(self) -> bool:
        """A regular file."""
        return self.kind == Kind.FILE


SIG_HASH_MASK = (1 << 64) - 1


def sig_hash(sig: Sig) -> int:
    """A 64-bit hash of a signature: what the state keeps in memory to tell "unchanged"."""
    return hash(sig) & SIG_HASH_MASK


@dataclass
class Walk:
    """What one walk of a tree met: folders that refused to be listed, one that vanished."""

    refused: set[str] = field(default_factory=set)
    moved: bool = False


class Poll(NamedTuple):
    """What changed on one side against the agreed signatures.

    ``deleted`` are agreed names the listings lacked (a listing may leave entries out: each
    is still looked up by name before a deletion is believed); ``unreadable`` the folders
    that refused to be listed (nothing below them counts as deleted).
    """

    changed: dict[str, Sig]
    deleted: set[str]
    total: int
    unreadable: frozenset[str] = frozenset()


class SideUnavailable(Exception):
    """The tree cannot be read at all (e.g. the Windows share's mount died)."""


class SourceChanged(Exception):
    """The source changed while it was being copied; the copy was discarded."""


class DestinationChanged(Exception):
    """The destination changed since it was last seen; it was left alone."""


class Blocked(OSError):
    """A path's folder is a symlink or a file on this side: nothing is written through it."""


class NotAFile(Blocked):
    """What was opened as a file is not one now (a FIFO, a device, a folder swapped in)."""


@dataclass(frozen=True)
class Copied:
    """What a copy produced.

    The destination's new signature, the content hash, and the signature of the source version
    that was copied (it may differ from the path's current one when a busy file was published).
    """

    dest: Sig
    sha: str
    source: Sig


def new_hash() -> hashlib.blake2b:
    """The content hash the agent records (fast; identity, not security)."""
    return hashlib.blake2b(digest_size=20)


def temp_prefix(token: str) -> str:
    """The prefix of the temp files of the agent whose token is ``token``."""
    return f"{TEMP_PREFIX}{token}."


def kind_of(mode: int) -> Kind:
    """The kind of an entry from its ``st_mode``."""
    if stat.S_ISREG(mode):
        return Kind.FILE
    if stat.S_ISDIR(mode):
        return Kind.DIR
    return Kind.SYMLINK if stat.S_ISLNK(mode) else Kind.OTHER


class Tree:
    """A folder tree addressed by POSIX paths relative to its root.

    Attributes:
        windows: the Windows side (fake inodes, whole-second mtimes: no ino/ctime in sigs).
        case_insensitive: names differing only in case are one entry (probed at start).
        file_mode, dir_mode: modes of what the agent creates (None: leave to the umask).
        keep: called with (parent fd, name, path, replacing=...) before the agent deletes or
            replaces a file here, to keep it (the versions); returns how to undo the keeping.
        temp: the prefix of the agent's own temp files here (never synced; see temp_prefix).
        unreadable: folders a walk or lookup was refused (since the last begin_batch or poll):
            what is below them is unknown, never absent.
    """

    def __init__(self, root: Path, name: str, *, windows: bool = False,
                 file_mode: int | None = None, dir_mode: int | None = None,
                 keep: Callable[..., Any] | None = None,
                 temp: str = temp_prefix("00000000")):
        self.root = root
        self.name = name
        self.windows = windows
        self.case_insensitive = False
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.keep = keep
        self.temp = temp
        self.unreadable: set[str] = set()
        #: Folder listings of the current batch (case-insensitive sides check exact names).
        self._names: dict[str, set[str]] = {}
        #: Folders opened for reading in this batch (see walk_dir's ``cached``).
        self._folders: dict[str, int] = {}
        self._caching = False
        #: Files seen in this batch that have other names (hard links).
        self.linked: set[str] = set()

    def begin_batch(self) -> None:
        """Forget the folder listings, linked files and unreadable folders of the last batch."""
        self._names.clear()
        self.linked.clear()
        self.unreadable.clear()

    def ignored(self, directory: str, name: str) -> bool:
        """Entries the agent never syncs: its temp files, its marker and folder, a fault's ballast.

        The marker and folder are at the top of the Windows side; the ballast of ``invoke
        fault NAS full`` at the top of the export.
        """
        if name.startswith(self.temp):
            return True
        if directory:
            return False
        if self.windows:
            return name.casefold() in ROOT_RESERVED
        return name == BALLAST and is_ballast(self.root / BALLAST)

    def ignored_path(self, rel: str) -> bool:
        """Whether ``rel`` is, or is below, an entry the agent never syncs (events name both)."""
        parent, _, name = rel.rpartition("/")
        top = rel.partition("/")[0]
        return self.ignored(parent, name) or (top != rel and self.ignored("", top))

    def under_unreadable(self, rel: str) -> bool:
        """Whether ``rel`` is, or is below, a folder this side refused to show."""
        return _below(rel, self.unreadable)

    def _exact(self, parent: str, name: str, fd: int) -> bool:
        """Whether ``name`` is spelled exactly so in ``parent`` (fd open on it).

        A listing may leave entries out (9p with big folders): a name the lookup found but
        the listing lacks counts as exact unless another spelling of it is listed.
        """
        names = self._names.get(parent)
        if names is None:
            names = self._names[parent] = set(os.listdir(fd))
        if name in names:
            return True
        key = case_key(name)
        return not any(case_key(listed) == key for listed in names)

    def _wrote(self, *parents: str) -> None:
        for parent in parents:
            self._names.pop(parent, None)

    def path(self, rel: str) -> Path:
        """The absolute path of ``rel`` (for messages; operations never resolve it)."""
        return self.root / rel

    def sig(self, st: os.stat_result) -> Sig:
        """The signature of a stat result on this side."""
        kind = kind_of(st.st_mode)
        readonly = not st.st_mode & 0o200
        if kind == Kind.DIR:
            return Sig(Kind.DIR, 0, 0, 0 if self.windows else st.st_ino, 0, False)
        if self.windows:
            return Sig(kind, st.st_size, st.st_mtime_ns, 0, 0, readonly)
        return Sig(kind, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, readonly)

    # -- reading -----------------------------------------------------------------------------

    def walk_dir(self, rel: str, *, create: bool = False, cached: bool = False) -> int:
        """An fd of the folder ``rel``, reached without following any symlink.

        Raises Blocked if a component is a symlink or not a folder, FileNotFoundError if it is
        missing (unless ``create``), SideUnavailable if the root cannot be opened. ``cached``
        (for reads only: nothing is ever written through it) starts from the deepest folder
        of ``rel`` already opened in this batch and keeps what it opens: over 9p every open
        is a round trip to Windows. It caches only within :meth:`caching_folders` (a batch),
        and is dropped when that ends.
        """
        parts = [p for p in rel.split("/") if p]
        if cached and self._caching and not create:
            return os.dup(self._cached_folder(parts))
        try:
            fd = os.open(self.root, DIR_FLAGS)
        except OSError as exc:
            raise SideUnavailable(f"{self.name}: {exc}") from exc
        for part in parts:
            try:
                try:
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o777, dir_fd=fd)
                        if self.dir_mode is not None:
                            os.chmod(part, self.dir_mode, dir_fd=fd)
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                close_quietly(fd)
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Blocked(exc.errno, f"{part} is not a folder on the {self.name} side",
                                  rel) from None
                raise
            close_quietly(fd)
            fd = child
        return fd

    def _cached_folder(self, parts: list[str]) -> int:
        """The cached fd of the folder ``parts`` (opened from the deepest cached one above)."""
        have = len(parts)
        while have and "/".join(parts[:have]) not in self._folders:
            have -= 1
        if have == 0 and "" not in self._folders:
            if len(self._folders) >= FOLDER_CACHE:
                self.forget_folders()
            try:
                self._folders[""] = os.open(self.root, DIR_FLAGS)
            except OSError as exc:
                raise SideUnavailable(f"{self.name}: {exc}") from exc
        fd = self._folders["/".join(parts[:have])]
        for i in range(have, len(parts)):
            try:
                fd = os.open(parts[i], DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Blocked(exc.errno, f"{parts[i]} is not a folder on the {self.name} side",
                                  "/".join(parts)) from None
                raise
            self._folders["/".join(parts[:i + 1])] = fd
        return fd

    @contextlib.contextmanager
    def caching_folders(self) -> Iterator[None]:
        """Within: folders opened for reading stay open (a batch); a folder may move after."""
        outer, self._caching = self._caching, True
        try:
            yield
        finally:
            self._caching = outer
            if not outer:
                self.forget_folders()

    def forget_folders(self) -> None:
        """Close the folders :meth:`walk_dir` cached (a folder may move between batches)."""
        folders, self._folders = self._folders, {}
        for fd in folders.values():
            close_quietly(fd)

    def stat(self, rel: str) -> Sig | None:
        """The signature of one entry (exact name, symlinks not followed), or None if absent.

        A folder on the way that refuses the lookup is added to ``unreadable`` (None then
        means "unknown": callers look there before taking it for absent).
        """
        parent, name = _split(rel)
        try:
            fd = self.walk_dir(parent, cached=True)
        except (FileNotFoundError, Blocked):
            return None
        except OSError as exc:
            if exc.errno in DENIED:
                self.unreadable.add(parent)
                return None
            raise
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if self.case_insensitive and not self._exact(parent, name, fd):
                return None
            if st.st_nlink > 1 and not self.windows and stat.S_ISREG(st.st_mode):
                self.linked.add(rel)
            return self.sig(st)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.ENOTCONN):
                raise SideUnavailable(f"{self.name}: {exc}") from exc
            if exc.errno in DENIED:
                self.unreadable.add(parent)
            return None
        finally:
            close_quietly(fd)

    def _stat_afresh(self, rel: str) -> Sig | None:
        """``stat`` through a walk from the root, whatever this batch keeps open."""
        caching, self._caching = self._caching, False
        try:
            return self.stat(rel)
        finally:
            self._caching = caching

    def scan(self, rel: str = "") -> dict[str, Sig]:
        """Signatures of every entry below ``rel`` (not ``rel`` itself), recursively."""
        found: dict[str, Sig] = {}
        stat_at, sig = os.stat, self.sig
        for directory, names, fd in self._directories(rel):
            prefix = f"{directory}/" if directory else ""
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    st = stat_at(name, dir_fd=fd, follow_symlinks=False)
                    found[prefix + name] = sig(st)
                    if st.st_nlink > 1 and not self.windows and stat.S_ISREG(st.st_mode):
                        self.linked.add(prefix + name)
        return found

    def view(self, rels: Iterable[str]) -> dict[str, Sig]:
        """Each of ``rels`` that exists and everything below those that are folders.

        Names are exact; where names differ only in case on a case-insensitive side, the entry
        is reported under the name it really has.
        """
        found: dict[str, Sig] = {}
        scanned: set[str] = set()
        for rel in sorted(set(rels), key=lambda r: r.count("/")):
            if any(parent in scanned for parent in _parents(rel)):
                continue  # a folder above it was scanned
            sig = self.stat(rel)
            if sig is None and self.case_insensitive:
                rel, sig = self._case_variant(rel)
            if sig is not None:
                found[rel] = sig
                if sig.is_dir:
                    scanned.add(rel)
                    with contextlib.suppress(SideUnavailable):
                        found.update(self.scan(rel))
        return found

    def _case_variant(self, rel: str) -> tuple[str, Sig | None]:
        """The entry whose name differs from ``rel``'s only in case, if there is one."""
        parent, name = _split(rel)
        key = case_key(name)
        for existing in self.listing(parent):
            if case_key(existing) == key:
                real = f"{parent}/{existing}" if parent else existing
                return real, self.stat(real)
        return rel, None

    def poll(self, agreed: Callable[[str], int | None], known: int,
             known_names: Callable[[], Iterable[str]],
             sink: Callable[[dict[str, Sig]], None] | None = None) -> Poll:
        """Compare the whole tree with the agreed signatures; only differences are kept.

        With ``sink``, differences are handed over in chunks of POLL_CHUNK as the walk finds
        them (a seed of 250,000 files never holds them all); the Poll keeps the rest.
        A poll that saw a folder vanish, or new names in its second walk that the first did
        not report (a folder renamed meanwhile), is done again, up to POLL_ATTEMPTS times:
        else the folder's files look deleted and their new names unseen, and no rename is
        found in this pass. Names one listing left out (9p with big folders) are no reason:
        what looks deleted is looked up by name before anything is done with it.
        """
        for _ in range(POLL_ATTEMPTS):
            walk = Walk()
            found = self._poll(agreed, known, known_names, walk, sink)
            if not walk.moved:
                break
        self.unreadable |= walk.refused
        return found

    def _poll(self, agreed: Callable[[str], int | None], known: int,
              known_names: Callable[[], Iterable[str]], walk: Walk,
              sink: Callable[[dict[str, Sig]], None] | None) -> Poll:
        """One walk of :meth:`poll`.

        ``agreed`` gives the hash (:func:`sig_hash`) of the signature agreed at a name, of
        which there are ``known``. This runs every interval over the Windows share, so a
        matching entry costs one stat relative to its open folder, one tuple hash and one
        integer comparison; the cyclic GC is paused meanwhile. Deletions are looked for (in
        ``known_names()``) only when fewer agreed names were seen than there are.
        """
        changed: dict[str, Sig] = {}
        matched = total = 0
        stat_at, sig_of, windows, is_reg = os.stat, self.sig, self.windows, stat.S_ISREG
        file, mask = Kind.FILE, SIG_HASH_MASK
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for directory, names, fd in self._directories("", walk):
                if sink is not None and len(changed) >= POLL_CHUNK:
                    gc.enable()  # what the sink does may create cycles
                    sink(changed)
                    changed = {}
                    gc.disable()
                prefix = f"{directory}/" if directory else ""
                for name in names:
                    path = prefix + name
                    try:
                        st = stat_at(name, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        if exc.errno not in DENIED:
                            raise SideUnavailable(f"{self.name}: {exc}") from exc
                        walk.refused.add(path)  # unknown, not deleted: a problem of its own
                        continue
                    total += 1
                    have = agreed(path)
                    if have is not None:
                        matched += 1
                        mode = st.st_mode
                        # _file_hash inlined: this line runs once per entry per poll.
                        if is_reg(mode):
                            now = hash((file, st.st_size, st.st_mtime_ns, 0, 0, not mode & 0o200)
                                       if windows else (file, st.st_size, st.st_mtime_ns, st.st_ino,
                                                        st.st_ctime_ns, not mode & 0o200)) & mask
                        else:
                            now = sig_hash(sig_of(st))
                        if have == now:
                            continue
                    changed[path] = sig_of(st)
        finally:
            if gc_was_enabled:
                gc.enable()
        deleted: set[str] = set()
        if matched < known:
            seen = {f"{d}/{n}" if d else n for d, names, _ in self._directories("", walk)
                    for n in names}
            names = set(known_names())
            deleted = names - seen
            if walk.refused:  # unknown below a folder that refused its listing, not gone
                deleted = {n for n in deleted if not _below(n, walk.refused)}
            # The second walk saw new names the first did not (a folder moved under the
            # first, which then saw part of it): they are missing from ``changed``.
            walk.moved |= any(agreed(n) is None and n not in changed for n in seen)
        return Poll(changed, deleted, total, frozenset(walk.refused))

    def _directories(self, rel: str, walk: Walk | None = None
                     ) -> Iterator[tuple[str, list[str], int]]:
        """(folder, entry names, open fd of the folder) for ``rel`` and every folder below it.

        Names exclude what :func:`ignored` names; symlinked folders are not entered. The fd is
        valid until the next item is asked for. Folders that refused to be listed go into
        ``walk.refused`` (default: ``unreadable``), and one that vanished sets ``walk.moved``.
        """
        walk = walk or Walk(self.unreadable)
        stack = [rel]
        ignored = self.ignored
        while stack:
            current = stack.pop()
            try:
                fd = self.walk_dir(current)
            except (FileNotFoundError, Blocked) as exc:
                if not current:
                    raise SideUnavailable(f"{self.name}: root {self.root} is missing") from None
                walk.moved |= isinstance(exc, FileNotFoundError)
                continue
            except OSError as exc:
                if exc.errno not in DENIED or not current:
                    raise SideUnavailable(f"{self.name}: {exc}") from exc
                walk.refused.add(current)
                continue
            try:
                try:
                    with os.scandir(fd) as entries:
                        names = []
                        for entry in entries:
                            name = entry.name
                            if name[0] == "." and ignored(current, name):  # all ignored names are dotted
                                continue
                            names.append(name)
                            if entry.is_dir(follow_symlinks=False):
                                stack.append(f"{current}/{name}" if current else name)
                except OSError as exc:
                    if exc.errno not in DENIED or not current:
                        raise SideUnavailable(f"{self.name}: {exc}") from exc
                    walk.refused.add(current)
                    continue
                yield current, names, fd
            finally:
                close_quietly(fd)

    def listing(self, rel: str) -> list[str]:
        """The exact names in the folder ``rel`` (ignored ones left out); [] if it is missing."""
        try:
            fd = self.walk_dir(rel)
        except (FileNotFoundError, Blocked):
            return []
        except OSError as exc:
            if exc.errno in DENIED:
                self.unreadable.add(rel)
                return []
            raise
        try:
            return [n for n in os.listdir(fd) if not self.ignored(rel, n)]
        except OSError as exc:
            if exc.errno in DENIED:
                self.unreadable.add(rel)
                return []
            raise
        finally:
            close_quietly(fd)

    def hash(self, rel: str, limit: int | None = None) -> str:
        """The content hash of one file (of its first ``limit`` bytes if given).

        NotAFile if what was read was no regular file (a FIFO reads as empty, never blocks).
        """
        fd = self._open_file(rel)
        try:
            digest = new_hash()
            remaining = limit
            while remaining is None or remaining > 0:
                chunk = os.read(fd, CHUNK if remaining is None else min(CHUNK, remaining))
                if not chunk:
                    break
                digest.update(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise NotAFile(errno.EINVAL, "not a regular file now (a FIFO, device or folder?)", rel)
            return digest.hexdigest()
        finally:
            close_quietly(fd)

    def _open_file(self, rel: str) -> int:
        """An fd to read ``rel``, opened without blocking.

        The caller checks on the descriptor, once it has read, that it is a regular file (a
        FIFO reads as empty).
        """
        parent, name = _split(rel)
        fd = self.walk_dir(parent, cached=True)
        try:
            return open_regular(name, fd, check=False)
        finally:
            close_quietly(fd)

    # -- writing -----------------------------------------------------------------------------

    def copy_from(self, source: Tree, rel: str, expected: Sig, *, dest: str | None = None,
                  dest_expected: Sig | None = None, dest_sha: str | None = None,
                  busy_ok: bool = False, set_aside: str | None = None,
                  progress: Callable[[int], None] | None = None) -> Copied:
        """Copy the file ``rel`` of ``source`` to ``dest`` (default ``rel``) here.

        The copy goes to a hidden temp file in the destination folder and is renamed into
        place only if the copied version is whole (the source did not change while it was
        read, or only grew and kept its prefix, which is then what is published) and the
        destination is still what was last seen (``dest_expected``; None: absent; on the
        Windows side its content must also hash to ``dest_sha``). The source is read through
        one open descriptor, checked before and after: what is published is a whole version
        it held (if its path names another by now, the next look copies that one). A replaced
        file is kept first, or renamed to ``set_aside`` (a conflict copy in the same folder)
        just before. ``progress`` is told the bytes copied as they go (a seed shows them).
        """
        dest = dest or rel
        parent, name = _split(dest)
        src_fd = source._open_file(rel)
        out_dir = None
        temp = None
        try:
            # The source is looked at once, after it was read (over 9p every look is a round
            # trip): a regular file still of the version expected, so what was read is whole.
            out_dir = self.walk_dir(parent, create=True)
            temp = f"{self.temp}{secrets.token_hex(4)}.{name}"
            temp = os.fsencode(temp)[:255].decode(errors="surrogateescape")
            mode = self.file_mode if self.file_mode is not None else 0o666
            out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          mode, dir_fd=out_dir)
            try:
                # 9p shows no holes, and asking costs a round trip per question (FUSE too).
                try:
                    length, sha = _copy_data(src_fd, out, expected.size, holes=not source.windows,
                                             progress=progress)
                except OSError as exc:
                    if exc.errno != errno.ESPIPE:  # no seeking in a FIFO: not a file
                        raise
                after = os.fstat(src_fd)
                copied_sig = source.sig(after)
                if after.st_nlink > 1 and not source.windows and copied_sig.is_file:
                    source.linked.add(rel)  # its other names changed too
                if not copied_sig.is_file:
                    raise NotAFile(errno.EINVAL, "not a regular file now (a FIFO, device or "
                                   "folder?)", rel)
                if not _same_version(copied_sig, expected) or length != expected.size:
                    if not (busy_ok and after.st_size >= length and copied_sig.is_file
                            and source.hash(rel, limit=length) == sha):
                        raise SourceChanged(rel)
                    copied_sig = expected._replace(size=length)  # the stable prefix
                    os.ftruncate(out, length)
                if self.file_mode is not None:
                    os.fchmod(out, self.file_mode & ~0o222 if expected.readonly else self.file_mode)
                with contextlib.suppress(OSError):  # the source's date (9p ignores it: Windows)
                    os.utime(out, ns=(after.st_atime_ns, expected.mtime_ns))
            finally:
                os.close(out)
            self._expect(out_dir, dest, dest_expected, dest_sha)
            if set_aside is not None and dest_expected is not None:
                aside = _split(set_aside)[1]
                with contextlib.suppress(FileNotFoundError):
                    os.stat(aside, dir_fd=out_dir, follow_symlinks=False)
                    raise FileExistsError(errno.EEXIST, "exists", set_aside)
                os.rename(name, aside, src_dir_fd=out_dir, dst_dir_fd=out_dir)
            kept = None
            if set_aside is None and dest_expected is not None:
                kept = self._make_way(out_dir, name, dest, dest_expected, replacing=True)
            try:
                os.rename(temp, name, src_dir_fd=out_dir, dst_dir_fd=out_dir)
            except OSError:
                if kept is not None:
                    kept.undo()  # the version kept for this replace is not one
                raise
            if kept is not None:
                kept.commit()
            temp = None
            self._wrote(parent)
            new = self.sig(os.stat(name, dir_fd=out_dir, follow_symlinks=False))
            if self.windows and expected.readonly and not new.readonly:
                os.chmod(name, 0o444, dir_fd=out_dir)
                new = self.sig(os.stat(name, dir_fd=out_dir, follow_symlinks=False))
            # The folder held since the walk may have been renamed or swapped meanwhile: the
            # copy is only done if the path, walked afresh, leads to what was written.
            if self._stat_afresh(dest) != new:
                raise DestinationChanged(dest)
            return Copied(new, sha, copied_sig)
        finally:
            close_quietly(src_fd)
            if out_dir is not None:
                if temp is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(temp, dir_fd=out_dir)
                close_quietly(out_dir)

    def _expect(self, dir_fd: int, rel: str, expected: Sig | None, sha: str | None) -> None:
        """Raise DestinationChanged unless ``rel`` is what was last seen (absent if None)."""
        name = _split(rel)[1]
        try:
            current = self.sig(os.stat(name, dir_fd=dir_fd, follow_symlinks=False))
        except FileNotFoundError:
            current = None
        if current is not None and self.case_insensitive and not self._exact(_split(rel)[0], name,
                                                                               dir_fd):
            raise DestinationChanged(rel)  # another name, differing only in case, holds the place
        if current != expected and not (
                current is not None and expected is not None and current.is_dir and expected.is_dir):
            raise DestinationChanged(rel)
        if self.windows and sha and current is not None and current.is_file \
                and self.hash(rel) != sha:
            raise DestinationChanged(rel)  # same size and mtime, other content (9p cannot tell)

    def _make_way(self, dir_fd: int, name: str, rel: str, current: Sig, *,
                  replacing: bool = False) -> Any:
        """Before replacing or deleting ``name``: keep it, make a read-only Windows file writable.

        For a replace, returns what ``keep`` returned (commit once replaced, or undo).
        """
        if current.is_file and self.keep is not None:
            if current.readonly:
                os.chmod(name, 0o666, dir_fd=dir_fd)
            return self.keep(dir_fd, name, rel, replacing=replacing)
        return None

    def mkdir(self, rel: str) -> Sig:
        """Create a folder (and its parents) with ``dir_mode``; return its signature."""
        close_quietly(self.walk_dir(rel, create=True))
        self._wrote(*_parents(rel))
        sig = self.stat(rel)
        if sig is None or not sig.is_dir:
            raise DestinationChanged(rel)
        return sig

    def rename(self, old: str, new: str) -> Sig:
        """Rename an entry within this tree, never replacing one (names may differ in case only)."""
        old_parent, old_name = _split(old)
        new_parent, new_name = _split(new)
        src = self.walk_dir(old_parent)
        try:
            dst = self.walk_dir(new_parent, create=True)
            try:
                case_only = old_parent == new_parent and case_key(old_name) == case_key(new_name)
                if not case_only:
                    with contextlib.suppress(FileNotFoundError):
                        os.stat(new_name, dir_fd=dst, follow_symlinks=False)
                        raise FileExistsError(errno.EEXIST, "exists", new)
                os.rename(old_name, new_name, src_dir_fd=src, dst_dir_fd=dst)
                self._wrote(old_parent, new_parent)
                return self.sig(os.stat(new_name, dir_fd=dst, follow_symlinks=False))
            finally:
                close_quietly(dst)
        finally:
            close_quietly(src)

    def remove(self, rel: str, expected: Sig, sha: str | None = None) -> bool:
        """Delete a file, or an empty folder, if it still is ``expected``; True if gone.

        A file is kept first (see ``keep``); a folder that is not empty stays (False).
        """
        parent, name = _split(rel)
        try:
            fd = self.walk_dir(parent)
        except (FileNotFoundError, Blocked):
            return True
        try:
            try:
                self._expect(fd, rel, expected, sha)
            except DestinationChanged:
                if self.stat(rel) is None:
                    return True
                raise
            self._wrote(parent)
            try:
                if expected.is_dir:
                    os.rmdir(name, dir_fd=fd)
                else:
                    self._make_way(fd, name, rel, expected)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    return False
                if exc.errno != errno.ENOENT:
                    raise
            return True
        finally:
            close_quietly(fd)

    def set_readonly(self, rel: str, readonly: bool) -> Sig:
        """Make one file read-only or writable; return its new signature."""
        parent, name = _split(rel)
        fd = self.walk_dir(parent)
        try:
            base = self.file_mode if self.file_mode is not None else 0o666
            os.chmod(name, base & ~0o222 if readonly else base | 0o200, dir_fd=fd)
            return self.sig(os.stat(name, dir_fd=fd, follow_symlinks=False))
        finally:
            close_quietly(fd)

    # -- the whole tree ----------------------------------------------------------------------

    def usage(self) -> dict[str, int] | None:
        """Bytes and files (inodes) used and there are of the filesystem holding the tree."""
        try:
            st = os.statvfs(self.root)
        except OSError:
            return None
        return {"used": (st.f_blocks - st.f_bfree) * st.f_frsize, "size": st.f_blocks * st.f_frsize,
                "files": st.f_files - st.f_ffree, "files_max": st.f_files}

    def full(self) -> str:
        """Why a write here found no space, in words with the fix (the export's limits)."""
        usage = self.usage() or {}
        if usage and usage["files_max"] and usage["files"] >= usage["files_max"]:
            return (f"no free inodes (files {usage['files']:,} of {usage['files_max']:,}): "
                    "raise storage.maxFiles")
        if usage:
            return (f"no space left ({usage['used'] / 2**20:.0f} of {usage['size'] / 2**20:.0f} MiB): "
                    "raise storage.sizeLimit")
        return "no space left"

    def has_marker(self) -> bool:
        """Whether the share marker is at the root (the share is really mounted)."""
        try:
            return os.path.isfile(self.root / MARKER)
        except OSError:
            return False

    def probe_case_insensitive(self) -> bool:
        """Find out (as Mutagen does) whether names differing only in case are one entry here."""
        probe = f"{self.temp}case-{secrets.token_hex(4)}"
        try:
            fd = self.walk_dir("")
        except SideUnavailable:
            return self.case_insensitive
        try:
            close_quietly(os.open(probe + "a", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=fd))
            try:
                os.stat(probe.upper() + "A", dir_fd=fd, follow_symlinks=False)
                self.case_insensitive = True
            except FileNotFoundError:
                self.case_insensitive = False
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(probe + "a", dir_fd=fd)
        except OSError:
            pass
        finally:
            close_quietly(fd)
        return self.case_insensitive

    def remove_temp_files(self) -> int:
        """Delete this agent's temp files that a kill left behind (its token only); return how many.

        Folders it may not list are skipped (``unreadable`` names them).
        """
        removed = 0
        self.unreadable.clear()
        for _, _, fd in self._directories(""):
            try:
                names = os.listdir(fd)
            except OSError as exc:
                if exc.errno in DENIED:
                    continue
                raise
            for name in names:
                if name.startswith(self.temp):
                    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                        os.unlink(name, dir_fd=fd)
                        removed += 1
        return removed

    def count(self) -> int:
        """How many files the tree holds (listings only: one per folder, no stat per file)."""
        names = folders = 0
        for _, listed, _ in self._directories(""):
            names, folders = names + len(listed), folders + 1
        return names - (folders - 1)  # every folder walked but the root is a name in its parent

    def is_empty(self) -> bool:
        """Whether the root holds nothing the agent syncs."""
        return not self.listing("")


def open_regular(name: str, dir_fd: int, *, check: bool = True) -> int:
    """Open ``name`` in the folder ``dir_fd`` for reading, never blocking: NotAFile unless a file.

    Checked on the open descriptor (fstat), so what is read is what was checked; ``check``
    off leaves that to the caller, who looks at the descriptor after reading (one round trip
    less over 9p).
    """
    fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    try:
        if check and not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotAFile(errno.EINVAL, "not a regular file now (a FIFO, device or folder?)", name)
    except BaseException:
        close_quietly(fd)
        raise
    return fd


def _below(rel: str, folders: set[str]) -> bool:
    """Whether ``rel`` is one of ``folders`` or below one ("" is the root: everything)."""
    return any(not folder or rel == folder or rel.startswith(folder + "/") for folder in folders)


def _split(rel: str) -> tuple[str, str]:
    """``a/b/c`` → (``a/b``, ``c``); ``c`` → ("", ``c``) (paths are relative, '/'-separated)."""
    parent, _, name = rel.strip("/").rpartition("/")
    return parent, name


def _parents(rel: str) -> list[str]:
    """Every folder above ``rel`` (the root as "")."""
    parts = rel.split("/")[:-1]
    return ["", *("/".join(parts[:i + 1]) for i in range(len(parts)))]


def _same_version(current: Sig, expected: Sig) -> bool:
    """Whether an open file is the version observed (for the Windows side: size and mtime)."""
    return current[:5] == expected[:5]


def _copy_data(src: int, out: int, size: int, *, holes: bool = True,
               progress: Callable[[int], None] | None = None) -> tuple[int, str]:
    """Copy ``size`` bytes into the new file ``out``, hashing them; holes stay holes (``holes``)."""
    digest = new_hash()
    position = written = 0
    while position < size:
        try:
            data = os.lseek(src, position, os.SEEK_DATA) if holes else position
        except OSError as exc:  # ENXIO: only a hole is left; else no SEEK_DATA: all is data
            data = size if exc.errno == errno.ENXIO else position
        data = min(data, size)
        while position < data:  # a hole: hashed as the zeros it reads as, not written
            step = min(CHUNK, data - position)
            digest.update(_ZEROS[:step])
            position += step
        if position >= size:
            break
        try:
            hole = min(os.lseek(src, position, os.SEEK_HOLE), size) if holes else size
        except OSError:
            hole = size
        os.lseek(src, position, os.SEEK_SET)
        while position < hole:
            chunk = os.read(src, min(CHUNK, hole - position))
            if not chunk:
                size = position  # the file shrank while it was read
                break
            os.pwrite(out, chunk, position)
            digest.update(chunk)
            position += len(chunk)
            written = position
            if progress is not None:
                progress(len(chunk))
    if written != position:
        os.ftruncate(out, position)  # a hole at the end
    return position, digest.hexdigest()


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
