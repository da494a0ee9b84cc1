"""Who listens on a TCP port of this machine (podman's NAS pods share its network).

"Ready" means the NAS's own server answers: a port some other program holds would answer too.
Linux only (``/proc``): the podman engine's host.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

LISTEN = "0A"


def listeners(wanted: set[int]) -> dict[int, int]:
    """Port → the pid listening on it (any address; 0 if it cannot be told), for those listened on."""
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if fields[3] == LISTEN and port in wanted:
                    inodes[f"socket:[{fields[9]}]"] = port
    found = dict.fromkeys(inodes.values(), 0)
    if not inodes:
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    port = inodes.get(os.readlink(fd))
                    if port is not None:
                        found[port] = int(entry.name)
    return found


def describe(pid: int) -> str:
    """``PID 1234 (python3)`` for messages."""
    if not pid:
        return "a process this user cannot see"
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        name = "gone since"
    return f"PID {pid} ({name})"


def descends_from(pid: int, ancestor: int, depth: int = 8) -> bool:
    """Whether ``pid`` is ``ancestor`` or below it (a container's tini and its server)."""
    for _ in range(depth):
        if pid == ancestor:
            return True
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if pid <= 1:
            return False
    return False
