"""The fault vocabulary: what `invoke fault` can make a NAS do, parsed and checked (pure).

A fault is asked for by writing ``fault.json`` into the NAS's state folder (the NAS holds it,
with its deadline, whatever happens to the task that asked); the NFS server's supervisor
(nfsd.py) applies it and says what it applied in ``fault-applied.json``. Kinds follow what a
system under test meets from a real NAS (Chaos Mesh's IOChaos and Toxiproxy name the same):

- ``down``: the server is stopped; clients get "connection refused".
- ``hang``: the server is frozen; connections are accepted and nothing is answered.
- ``readonly``: the export is served read-only; writes fail (EROFS), reads work.
- ``full``: the export's free space and inodes are taken; client writes fail (ENOSPC).
- ``slow[=MS]``: every reply is delayed by MS milliseconds (200).
- ``flaky[=P]``: a fraction P of new connections is reset (0.5).
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Kind → (the option's meaning, its default, its range) for kinds that take one.
OPTIONS: dict[str, tuple[str, float, float, float]] = {
    "slow": ("milliseconds", 200, 1, 60_000),
    "flaky": ("fraction of connections", 0.5, 0.01, 1.0),
}
KINDS = ("down", "hang", "readonly", "full", "slow", "flaky")
#: Kinds only a node with device-mapper could make (the kernel under the export).
NEEDS_DEVICE_MAPPER = ("eio",)
FAULT_FILE = "fault.json"
APPLIED_FILE = "fault-applied.json"
MAX_DURATION = 7 * 86400
#: What `full` puts at the top of the export (the sync agent leaves it alone).
BALLAST = ".filesim-full"
#: Written into the ballast folder first: only a folder holding it is the ballast (an NFS
#: client's own folder of that name is neither ignored nor removed).
BALLAST_MARK = "made-by-filesim-nfs"


def is_ballast(folder: Path) -> bool:
    """Whether ``folder`` is the ballast ``full`` made: a real folder and its mark, both root's.

    NFS clients are root-squashed: none can make a root-owned file, so a client's folder of
    that name is not the ballast even with a mark it made (it is synced, and never removed).
    """
    try:
        made, mark = os.lstat(folder), os.lstat(folder / BALLAST_MARK)
    except OSError:
        return False
    return stat.S_ISDIR(made.st_mode) and stat.S_ISREG(mark.st_mode) and made.st_uid == mark.st_uid == 0


@dataclass(frozen=True)
class Fault:
    """One fault: its kind, its option (slow's ms, flaky's fraction), when it ends (epoch)."""

    kind: str
    value: float | None = None
    until: float | None = None

    @property
    def label(self) -> str:
        """``slow=200``, ``flaky=0.2``, ``down``: what the status shows."""
        if self.value is None:
            return self.kind
        return f"{self.kind}={self.value:g}"

    def active(self, now: float) -> bool:
        """Whether it still holds at ``now`` (one without a deadline holds until cleared)."""
        return self.until is None or now < self.until

    def to_json(self) -> dict[str, Any]:
        """kind, value, until."""
        return asdict(self)


def parse(text: str) -> Fault:
    """``slow=300`` → Fault; ValueError with one line naming the fix."""
    kind, _, option = text.strip().partition("=")
    if kind in NEEDS_DEVICE_MAPPER:
        raise ValueError(f"fault {kind} needs device-mapper on the node under the export, which "
                         f"this machine's kernel lacks; choose one of: {', '.join(KINDS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown fault {text!r}: choose one of {', '.join(KINDS)} "
                         f"(slow=MS and flaky=P take a value), or clear")
    value: float | None = None
    if kind in OPTIONS:
        meaning, default, low, high = OPTIONS[kind]
        try:
            value = float(option) if option else default
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # NaN fails too
            raise ValueError(f"{kind}={option}: give {meaning} between {low:g} and {high:g}, "
                             f"e.g. {kind}={default:g}")
    elif option:
        raise ValueError(f"fault {kind} takes no value: use {kind}")
    return Fault(kind, value)


def check_duration(seconds: float) -> float:
    """``--for``: seconds between 1 and a week; ValueError naming the fix otherwise."""
    if not 1 <= seconds <= MAX_DURATION:
        raise ValueError(f"--for {seconds:g}: give seconds between 1 and {MAX_DURATION} (a week)")
    return seconds


def read(state: Path, name: str = FAULT_FILE) -> Fault | None:
    """The fault asked for (or, with APPLIED_FILE, the one applied), if any and well formed."""
    try:
        data = json.loads((state / name).read_text())
        if data.get("kind") is None:
            return None
        return Fault(str(data["kind"]), data.get("value"), data.get("until"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write(state: Path, fault: Fault | None, name: str = FAULT_FILE) -> None:
    """Ask for ``fault`` (None: clear), atomically."""
    target = state / name
    if fault is None:
        target.unlink(missing_ok=True)
        return
    temp = target.with_name(f".{name}.tmp")
    temp.write_text(json.dumps(fault.to_json()))
    os.replace(temp, target)
