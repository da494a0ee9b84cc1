"""What the agent's helper processes (inotifywait, tail) share: they die with it, and restart."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import time
from collections.abc import Callable

#: Back-off between restarts of a helper that ended (seconds, doubling up to MAX_RETRY).
FIRST_RETRY, MAX_RETRY = 1.0, 60.0


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The helper is killed with the agent, even by kill -9 (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class Backoff:
    """When a helper that failed is started again; each new failure is logged once."""

    def __init__(self, log: logging.Logger, event: str, meanwhile: str,
                 clock: Callable[[], float] = time.monotonic):
        self.log = log
        self.event = event
        self.meanwhile = meanwhile
        self.clock = clock
        #: When to start again (monotonic clock; 0: never failed).
        self.at = 0.0
        self.wait = FIRST_RETRY
        #: The failure last logged (None: the helper works).
        self.error: str | None = None

    def failed(self, error: str) -> None:
        """Log ``error`` unless it was the last one, and wait longer before the next start."""
        if error != self.error:
            self.log.error(f"{self.event} unavailable", extra={"error": error, "detail": self.meanwhile})
        self.error = error
        self.at = self.clock() + self.wait
        self.wait = min(MAX_RETRY, self.wait * 2)

    def works(self, detail: str) -> None:
        """The helper works (again): say so if it had failed; a later failure backs off anew."""
        if self.error is not None:
            self.log.info(self.event, extra={"detail": detail})
        self.error, self.wait = None, FIRST_RETRY
