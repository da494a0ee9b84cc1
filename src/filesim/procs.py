"""Who a pid is: a process is signalled only once it is proven to be the one filesim started.

A pid in a state file can outlive its process and be reused by another (a reboot, a crash):
the state records the process's identity too — its start time (Linux: ``/proc/<pid>/stat``,
Windows: its creation time) and a token on its command line — and both must still match.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path


def identity(pid: int) -> str | None:
    """What tells this process apart from a later one with the same pid; None if it is gone."""
    if sys.platform == "win32":  # pragma: no cover - runs on the tester's Windows machine
        return _windows_creation(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):  # a zombie is no process to signal
        return None
    return f"start:{fields[19]}"  # field 22, starttime, in clock ticks since boot


def command_line(pid: int) -> list[str] | None:
    """The process's arguments (None where they cannot be read: another OS, a gone process)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [os.fsdecode(part) for part in raw.split(b"\0") if part]


def is_ours(pid: object, recorded: object, token: object) -> bool:
    """Whether ``pid`` is still the process recorded with identity ``recorded`` and ``token``.

    The token must be on its command line where that can be read (Linux).
    """
    if not isinstance(pid, int) or pid <= 0 or not isinstance(recorded, str) or not token:
        return False
    if identity(pid) != recorded:
        return False
    argv = command_line(pid)
    return argv is None or str(token) in argv


def kill(pid: int, recorded: str, token: str) -> bool:
    """Kill the process only if it is still the one recorded; whether it was signalled."""
    if not is_ours(pid, recorded, token):
        return False
    if sys.platform == "win32":  # pragma: no cover - the tester's Windows machine
        import subprocess

        subprocess.run(["taskkill", "/PID", str(pid), "/F"], capture_output=True, check=False)
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def _windows_creation(pid: int) -> str | None:  # pragma: no cover - Windows only
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return None
    try:
        times = [wintypes.FILETIME() for _ in range(4)]
        if not kernel32.GetProcessTimes(handle, *(ctypes.byref(t) for t in times)):
            return None
        code = wintypes.DWORD()
        if kernel32.GetExitCodeProcess(handle, ctypes.byref(code)) and code.value != 259:
            return None  # it ended (259: STILL_ACTIVE)
        return f"created:{times[0].dwHighDateTime << 32 | times[0].dwLowDateTime}"
    finally:
        kernel32.CloseHandle(handle)
