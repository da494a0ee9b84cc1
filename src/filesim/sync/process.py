"""What the agent's helper processes (inotifywait, tail) share: they die with it, and restart."""

from __future__ import annotations

import contextlib
import ctypes
import signal

#: Back-off between restarts of a helper that ended (seconds, doubling up to MAX_RETRY).
FIRST_RETRY, MAX_RETRY = 1.0, 60.0


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The helper is killed with the agent, even by kill -9 (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
