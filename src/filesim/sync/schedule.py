"""How often the agent looks at a whole side: often without change events, rarely with them.

Without events (no host watcher on the Windows side, inotifywait down on the NFS side) a
side is polled every ``sync.interval`` seconds, stretched so that polling takes at most
``POLL_SHARE`` of a core (9p makes every stat a round trip to Windows). With events, the
whole-side looks are a safety net for events lost on the way: all of it (the Windows polls, the
NFS rescans and the agent's hash sweep) takes at most 0.05 % of a core, shared as in
``SAFETY_SHARES``, and a side is never looked at more often than every ``SAFETY_MIN`` seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

POLL_SHARE = 0.04
#: Most for the Windows side, whose hints cross 9p from another machine; inotify on the local
#: export loses events only when its queue overflows, which rescans at once anyway.
SAFETY_SHARES = {"windows": 0.0002, "nfs": 0.0001, "sweep": 0.0002}
SAFETY_MIN = 60.0
#: Weight of the newest scan in the running cost (scans vary with the machine's load).
SMOOTHING = 0.3


@dataclass
class ScanCost:
    """The running cost of scanning one side, in seconds, and its share of the safety net."""

    safety_share: float
    seconds: float = 0.0

    def add(self, seconds: float) -> None:
        """Take a new measurement into account."""
        self.seconds = seconds if not self.seconds else (
            SMOOTHING * seconds + (1 - SMOOTHING) * self.seconds)

    def every(self, interval: float, *, events: bool) -> float:
        """Seconds between whole-side looks: the safety net with events, else the poll."""
        if events:
            return max(SAFETY_MIN, self.seconds / self.safety_share)
        # Half seconds: small jitter in the cost does not move the interval (nor log lines).
        return max(interval, math.ceil(self.seconds / POLL_SHARE * 2) / 2)
