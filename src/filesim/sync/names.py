r"""What the Windows side can name, and a reversible encoding for what it cannot.

NFS names are any bytes but ``/`` and NUL; NTFS (through minikube's 9p server) refuses
``<>:"|?*\\``, control characters, a trailing dot or space, device names (``CON``, ``aux.txt``...)
and bytes that are not UTF-8, and a path of 260 characters or more. Names the Windows side
cannot hold are encoded with look-alike characters, as rclone's encoder does (``a:b.txt`` →
``a：b.txt``), device names by their first letter's full-width form (``aux.txt`` → ``ａux.txt``),
bytes that are not UTF-8 as ``‛`` + two hex digits; a name that already holds a look-alike (or
``‛`` itself) has it escaped with ``‛``, so decoding gives back exactly the NFS name. At the
top of a NAS folder the agent keeps ``.filesim-share`` and ``.filesim`` for itself: NFS names
that Windows would take for those get a full-width first dot (``.filesim`` → ``．filesim``).

Paths are ``str``; bytes that are not UTF-8 travel as lone surrogates (Python's
``surrogateescape``), which is what ``os.listdir`` returns for them.
"""

from __future__ import annotations

import re

from filesim.sync.status import HIDDEN, MARKER

QUOTE = "\u201b"  # ‛ SINGLE HIGH-REVERSED-9 QUOTATION MARK
FULLWIDTH = 0xFEE0
SYMBOL_FOR_CONTROL = 0x2400  # ␀: SYMBOL FOR NULL
SYMBOL_FOR_SPACE = "\u2420"  # ␠
FULLWIDTH_PERIOD = "\uff0e"  # ．
#: ASCII characters Windows refuses in names, encoded as their full-width forms.
SPECIAL = '<>:"|?*\\'
LOOKALIKES = {chr(ord(c) + FULLWIDTH): c for c in SPECIAL}
CONTROLS = {chr(SYMBOL_FOR_CONTROL + i): chr(i) for i in range(1, 32)}
#: Device names: Win32 takes the name before the first dot, trailing spaces ignored (``con .txt``).
RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]) *(\.|$)", re.IGNORECASE)
#: An ASCII name Windows can hold as it is (no special or control character, no trailing dot
#: or space); device names are checked apart.
PLAIN = re.compile(r'[^<>:"|?*\\\x00-\x1f]*[^<>:"|?*\\\x00-\x1f. ]')
#: Names the agent keeps at the top of the Windows side (compared by case, as Windows does).
TOP_RESERVED = (MARKER.casefold(), HIDDEN.casefold())
#: Longest path Windows programs can open (MAX_PATH, 260, less the terminating NUL).
MAX_PATH = 259
MAX_COMPONENT = 255


def is_valid(name: str) -> bool:
    """Whether NTFS (through 9p) can hold ``name`` as it is."""
    return encode(name) == name


def _top_reserved(name: str) -> bool:
    return name.casefold() in TOP_RESERVED


def encode(name: str, *, top: bool = False) -> str:
    """The Windows name of one NFS name component (``top``: directly in the NAS folder)."""
    if not name or (name.isascii() and PLAIN.fullmatch(name) and not RESERVED.match(name)
                    and not (top and _top_reserved(name))):
        return name  # most names: nothing to encode (checked in C)
    if top:
        if _top_reserved(name):
            return FULLWIDTH_PERIOD + encode(name[1:])
        if name[0] == FULLWIDTH_PERIOD and _top_reserved("." + name[1:]):
            return QUOTE + name  # an NFS name that looks like an encoded reserved one
    out: list[str] = []
    for i, ch in enumerate(name):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
            out.append(f"{QUOTE}{code - 0xDC00:02X}")
        elif ch in SPECIAL:
            out.append(chr(code + FULLWIDTH))
        elif 1 <= code < 32:
            out.append(chr(SYMBOL_FOR_CONTROL + code))
        elif ch == QUOTE or ch in LOOKALIKES or ch in CONTROLS or (
                i == len(name) - 1 and ch in (SYMBOL_FOR_SPACE, FULLWIDTH_PERIOD)):
            out.append(QUOTE + ch)
        elif i == len(name) - 1 and ch == " ":
            out.append(SYMBOL_FOR_SPACE)
        elif i == len(name) - 1 and ch == ".":
            out.append(FULLWIDTH_PERIOD)
        else:
            out.append(ch)
    encoded = "".join(out)
    if RESERVED.match(encoded):
        first = encoded[0]
        encoded = chr(ord(first) + FULLWIDTH) + encoded[1:]
    elif _reserved_after_decoding_first(encoded):
        encoded = QUOTE + encoded
    return encoded


def decode(name: str, *, top: bool = False) -> str:
    """The NFS name of one Windows name component (inverse of :func:`encode`).

    Windows names no NFS name encodes to (``．`` alone, a stray ``‛``) decode to themselves
    or to the nearest name; the state keeps both names of every path, so such a name keeps
    the pairing it was first seen with, and the agent gives a name that decodes to one
    already taken an alternative (see :func:`alternative`).
    """
    if name.isascii():
        return name  # every look-alike is outside ASCII: nothing to decode
    if top and name[:1] == FULLWIDTH_PERIOD and _top_reserved("." + name[1:]):
        return "." + name[1:]
    decoded = _decode(name) if name else name
    return name if decoded in ("", ".", "..") else decoded


def _decode(name: str) -> str:
    if _reserved_after_decoding_first(name):
        name = chr(ord(name[0]) - FULLWIDTH) + name[1:]
    out: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        last = i == len(name) - 1
        if ch == QUOTE and i + 1 < len(name):
            hex_pair = name[i + 1:i + 3]
            if re.fullmatch(r"[0-9A-F]{2}", hex_pair) and int(hex_pair, 16) >= 0x80:
                out.append(chr(0xDC00 + int(hex_pair, 16)))
                i += 3
                continue
            out.append(name[i + 1])
            i += 2
            continue
        if ch in LOOKALIKES:
            out.append(LOOKALIKES[ch])
        elif ch in CONTROLS:
            out.append(CONTROLS[ch])
        elif last and ch == SYMBOL_FOR_SPACE:
            out.append(" ")
        elif last and ch == FULLWIDTH_PERIOD:
            out.append(".")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _reserved_after_decoding_first(name: str) -> bool:
    """``ａux.txt``: a device name whose first letter is full-width (the encoded form)."""
    first = ord(name[0]) - FULLWIDTH
    return 0x21 <= first <= 0x7E and bool(RESERVED.match(chr(first) + name[1:]))


def encode_path(path: str, *, top: bool = True) -> str:
    """The Windows path of an NFS path, component by component (``top``: from the NAS folder)."""
    return "/".join(encode(part, top=top and i == 0) for i, part in enumerate(path.split("/")))


def decode_path(path: str, *, top: bool = True) -> str:
    """The NFS path of a Windows path, component by component (``top``: from the NAS folder)."""
    return "/".join(decode(part, top=top and i == 0) for i, part in enumerate(path.split("/")))


def case_key(path: str) -> str:
    """What a case-insensitive filesystem compares names by."""
    return path.casefold()


def too_long(windows_path: str, root_length: int) -> bool:
    """Whether a Windows path (below a root of ``root_length`` characters) exceeds MAX_PATH."""
    utf16 = len(windows_path.encode("utf-16-le")) // 2
    longest = max((len(p.encode("utf-16-le")) // 2 for p in windows_path.split("/")), default=0)
    return root_length + 1 + utf16 > MAX_PATH or longest > MAX_COMPONENT


def display(path: str) -> str:
    r"""A path for logs and status: bytes that are not UTF-8 shown as ``\xe4``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def alternative_of(name: str, why: str) -> str | None:
    """The name ``name`` is an alternative of (``report (case 2).csv`` → ``report.csv``), if any."""
    found = re.fullmatch(rf"(.*) \({why} \d+\)(\.[^.]*)?", name, re.DOTALL)
    return None if found is None else found.group(1) + (found.group(2) or "")


def alternative(name: str, n: int, why: str = "case") -> str:
    """``report.csv`` → ``report (case 2).csv``: a visible name for a collision of names.

    ``why`` says what collided: ``case`` (two NFS names one Windows name apart in case only),
    ``name`` (two Windows names that decode to one NFS name).
    """
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        return f"{name} ({why} {n})"
    return f"{stem} ({why} {n}).{suffix}"
