"""A raw NFSv4.0 client for tests: ONC RPC over TCP, AUTH_SYS, COMPOUND (RFC 5531, RFC 7530).

libnfs cannot forge file handles nor create symlinks; this can. It speaks just enough of
NFSv4.0 for the security and tree-shape tests: PUTROOTFH, PUTFH, LOOKUP, GETFH, GETATTR,
READDIR, READ, WRITE (anonymous stateid), CREATE (directories, symlinks) and REMOVE.
Every call is one COMPOUND; a failed operation raises Nfs4Error with the NFS4ERR name.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
from dataclasses import dataclass

NFS_PROGRAM, NFS_V4, COMPOUND = 100003, 4, 1
AUTH_SYS = 1
OP = {"CREATE": 6, "GETATTR": 9, "GETFH": 10, "LOOKUP": 15, "PUTFH": 22, "PUTROOTFH": 24,
      "READ": 25, "READDIR": 26, "REMOVE": 28, "WRITE": 38}
ERRORS = {1: "NFS4ERR_PERM", 2: "NFS4ERR_NOENT", 5: "NFS4ERR_IO", 13: "NFS4ERR_ACCESS",
          17: "NFS4ERR_EXIST", 20: "NFS4ERR_NOTDIR", 21: "NFS4ERR_ISDIR", 22: "NFS4ERR_INVAL",
          28: "NFS4ERR_NOSPC", 30: "NFS4ERR_ROFS", 70: "NFS4ERR_STALE", 10001: "NFS4ERR_BADHANDLE",
          10004: "NFS4ERR_SERVERFAULT", 10014: "NFS4ERR_FHEXPIRED", 10016: "NFS4ERR_WRONGSEC",
          10025: "NFS4ERR_BAD_STATEID", 10036: "NFS4ERR_BADXDR"}
NF4REG, NF4DIR, NF4LNK = 1, 2, 5
#: Attribute numbers (RFC 7530 §5.8): type, size, fileid, mode, owner, owner_group.
TYPE, SIZE, FILEID, MODE, OWNER, OWNER_GROUP = 1, 4, 20, 33, 36, 37
ANONYMOUS_STATEID = b"\0" * 16


class Nfs4Error(Exception):
    """An NFSv4 operation failed; ``name`` is its NFS4ERR_* name."""

    def __init__(self, op: str, status: int):
        self.op, self.status = op, status
        self.name = ERRORS.get(status, f"NFS4ERR_{status}")
        super().__init__(f"{op}: {self.name}")


class Packer:
    """XDR encoding (RFC 4506): big-endian, 4-byte aligned."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def uint(self, value: int) -> Packer:
        self.parts.append(struct.pack(">I", value))
        return self

    def hyper(self, value: int) -> Packer:
        self.parts.append(struct.pack(">Q", value))
        return self

    def fixed(self, data: bytes) -> Packer:
        self.parts.append(data + b"\0" * (-len(data) % 4))
        return self

    def opaque(self, data: bytes) -> Packer:
        return self.uint(len(data)).fixed(data)

    def bitmap(self, attrs: tuple[int, ...]) -> Packer:
        words = [0] * (max(attrs, default=-1) // 32 + 1)
        for attr in attrs:
            words[attr // 32] |= 1 << (attr % 32)
        self.uint(len(words))
        for word in words:
            self.uint(word)
        return self

    def bytes(self) -> bytes:
        return b"".join(self.parts)


class Unpacker:
    """XDR decoding."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def uint(self) -> int:
        (value,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return value

    def hyper(self) -> int:
        (value,) = struct.unpack_from(">Q", self.data, self.pos)
        self.pos += 8
        return value

    def fixed(self, size: int) -> bytes:
        data = self.data[self.pos:self.pos + size]
        self.pos += size + (-size % 4)
        return data

    def opaque(self) -> bytes:
        return self.fixed(self.uint())

    def bitmap(self) -> set[int]:
        words = [self.uint() for _ in range(self.uint())]
        return {i * 32 + bit for i, word in enumerate(words) for bit in range(32) if word >> bit & 1}


@dataclass
class Entry:
    """One READDIR entry."""

    name: bytes
    attrs: dict[int, object]


class Client:
    """One TCP connection to an NFSv4 server, calling as ``uid``/``gid`` (AUTH_SYS)."""

    def __init__(self, host: str, port: int, *, uid: int = 0, gid: int = 0, timeout: float = 10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.uid, self.gid = uid, gid
        self.xids = itertools.count(int.from_bytes(os.urandom(3), "big"))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- RPC ---------------------------------------------------------------------------------

    def _call(self, body: bytes) -> Unpacker:
        xid = next(self.xids) & 0xFFFFFFFF
        cred = Packer().uint(0).opaque(b"filesim-test").uint(self.uid).uint(self.gid).uint(0).bytes()
        header = (Packer().uint(xid).uint(0).uint(2).uint(NFS_PROGRAM).uint(NFS_V4).uint(COMPOUND)
                  .uint(AUTH_SYS).opaque(cred).uint(0).opaque(b"").bytes())
        message = header + body
        self.sock.sendall(struct.pack(">I", 0x80000000 | len(message)) + message)
        reply = self._record()
        u = Unpacker(reply)
        if u.uint() != xid or u.uint() != 1:
            raise ConnectionError("unexpected RPC reply")
        if u.uint() != 0:
            raise ConnectionError("RPC call denied")
        u.uint()
        u.opaque()  # verifier
        accept = u.uint()
        if accept != 0:
            raise ConnectionError(f"RPC call not accepted ({accept})")
        return u

    def _record(self) -> bytes:
        data = b""
        last = False
        while not last:
            (marker,) = struct.unpack(">I", self._exactly(4))
            last = bool(marker & 0x80000000)
            data += self._exactly(marker & 0x7FFFFFFF)
        return data

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("server closed the connection")
            data += chunk
        return data

    def compound(self, ops: list[tuple[str, bytes]]) -> list[tuple[str, Unpacker]]:
        """Run ``(op name, encoded args)`` in one COMPOUND; each op's result, or Nfs4Error."""
        body = Packer().opaque(b"").uint(0).uint(len(ops))
        for name, args in ops:
            body.uint(OP[name]).fixed(args)
        u = self._call(body.bytes())
        u.uint()  # overall status: the failing op's status is read below
        u.opaque()
        count = u.uint()
        results = []
        for name, _ in ops[:count]:
            if u.uint() != OP[name]:
                raise ConnectionError(f"reply out of order at {name}")
            status = u.uint()
            if status != 0:
                raise Nfs4Error(name, status)
            results.append((name, u))
        return results

    # -- operations (each returns what the last op yields) -----------------------------------

    @staticmethod
    def _fh_ops(fh: bytes | None, path: list[str]) -> list[tuple[str, bytes]]:
        ops = [("PUTFH", Packer().opaque(fh).bytes()) if fh is not None else ("PUTROOTFH", b"")]
        return ops + [("LOOKUP", Packer().opaque(part.encode()).bytes()) for part in path]

    def handle(self, path: str, fh: bytes | None = None) -> bytes:
        """The file handle of ``path`` (below ``fh``, or from the pseudo root)."""
        *_, (_, u) = self.compound([*self._fh_ops(fh, _parts(path)), ("GETFH", b"")])
        return u.opaque()

    def getattr(self, fh: bytes, attrs: tuple[int, ...] = (TYPE, SIZE, MODE, OWNER)) -> dict[int, object]:
        """Attributes of the object ``fh`` names."""
        *_, (_, u) = self.compound([*self._fh_ops(fh, []),
                                    ("GETATTR", Packer().bitmap(attrs).bytes())])
        return _attrs(u)

    def readdir(self, fh: bytes, attrs: tuple[int, ...] = (TYPE, FILEID)) -> list[Entry]:
        """Every entry of the directory ``fh`` names, with ``attrs``."""
        entries: list[Entry] = []
        cookie, verifier, eof = 0, b"\0" * 8, False
        while not eof:
            args = Packer().hyper(cookie).fixed(verifier).uint(8192).uint(32768).bitmap(attrs)
            *_, (_, u) = self.compound([*self._fh_ops(fh, []), ("READDIR", args.bytes())])
            verifier = u.fixed(8)
            while u.uint():
                cookie = u.hyper()
                name = u.opaque()
                entries.append(Entry(name, _attrs(u)))
            eof = bool(u.uint())
        return entries

    def read(self, fh: bytes, offset: int = 0, count: int = 65536) -> bytes:
        """Up to ``count`` bytes of the file ``fh`` names (anonymous stateid)."""
        args = Packer().fixed(ANONYMOUS_STATEID).hyper(offset).uint(count).bytes()
        *_, (_, u) = self.compound([*self._fh_ops(fh, []), ("READ", args)])
        u.uint()  # eof
        return u.opaque()

    def write(self, fh: bytes, data: bytes, offset: int = 0) -> int:
        """Write ``data`` into the file ``fh`` names (anonymous stateid); bytes written."""
        args = Packer().fixed(ANONYMOUS_STATEID).hyper(offset).uint(2).opaque(data).bytes()
        *_, (_, u) = self.compound([*self._fh_ops(fh, []), ("WRITE", args)])
        return u.uint()

    def mkdir(self, fh: bytes, name: str, mode: int = 0o755) -> None:
        """Create a directory ``name`` in the directory ``fh`` names."""
        self._create(fh, Packer().uint(NF4DIR), name, mode)

    def symlink(self, fh: bytes, name: str, target: str) -> None:
        """Create a symlink ``name`` → ``target`` in the directory ``fh`` names."""
        self._create(fh, Packer().uint(NF4LNK).opaque(target.encode()), name, 0o777)

    def _create(self, fh: bytes, kind: Packer, name: str, mode: int) -> None:
        attrs = Packer().bitmap((MODE,)).opaque(Packer().uint(mode).bytes())
        self.compound([*self._fh_ops(fh, []),
                       ("CREATE", kind.opaque(name.encode()).fixed(attrs.bytes()).bytes())])

    def remove(self, fh: bytes, name: str) -> None:
        """Delete ``name`` from the directory ``fh`` names."""
        self.compound([*self._fh_ops(fh, []), ("REMOVE", Packer().opaque(name.encode()).bytes())])


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _attrs(u: Unpacker) -> dict[int, object]:
    present = sorted(u.bitmap())
    data = Unpacker(u.opaque())
    values: dict[int, object] = {}
    for attr in present:
        if attr in (TYPE, MODE):
            values[attr] = data.uint()
        elif attr in (SIZE, FILEID):
            values[attr] = data.hyper()
        elif attr in (OWNER, OWNER_GROUP):
            values[attr] = data.opaque().decode()
        else:
            break  # only the attributes above are decoded; the rest of the list is skipped
    return values
