"""Kubernetes quantities (``500Mi``, ``1G``, ``0.5``) as numbers, for sizes and memory limits."""

from __future__ import annotations

import re

SUFFIXES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "m": 0.001}
PATTERN = re.compile(r"^\+?(\d+(?:\.\d*)?|\.\d+)([eE][+-]?\d+|[kMGTPE]i?|[KMGTPE]i|m)?$")


def to_bytes(quantity: str | int | float) -> int:
    """The number a quantity stands for, rounded up (``500Mi`` → 524288000)."""
    match = PATTERN.match(str(quantity).strip())
    if not match:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity")
    number, suffix = match.groups()
    if suffix and suffix[0] in "eE":
        return int(-(-float(number + suffix) // 1))
    return int(-(-float(number) * SUFFIXES[suffix or ""] // 1))


def mebibytes(quantity: str | int | float) -> int:
    """A quantity in whole MiB (rounded down)."""
    return to_bytes(quantity) // 2**20


def mib(count: int) -> str:
    """``count`` MiB as a quantity."""
    return f"{count}Mi"
