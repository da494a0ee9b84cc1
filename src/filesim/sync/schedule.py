"""How often the agent looks at a whole side: often without change events, rarely with them.

Without events (no host watcher on the Windows side, inotifywait down on the NFS side) a
side is polled every ``sync.interval`` seconds, stretched so that polling takes at most
``POLL_SHARE`` of a core (9p makes every stat a round trip to Windows). With events, the
whole-side look is a safety net for events lost on the way, spaced so that it costs at most
``SAFETY_SHARE`` of a core and runs no more often than every ``SAFETY_MIN`` seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

POLL_SHARE = 0.04
#: With the watcher, every hinted path is looked at (by content if its size and mtime stayed)
#: and an overflow becomes a rescan hint: whole-side looks and the hash sweep are a net for
#: what still slips through, at 0.02 % of a core each.
SAFETY_SHARE = 0.0002
SAFETY_MIN = 60.0
#: Weight of the newest scan in the running cost (scans vary with the machine's load).
SMOOTHING = 0.3


@dataclass
class ScanCost:
    """The running cost of scanning one side, in seconds."""

    seconds: float = 0.0

    def add(self, seconds: float) -> None:
        """Take a new measurement into account."""
        self.seconds = seconds if not self.seconds else (
            SMOOTHING * seconds + (1 - SMOOTHING) * self.seconds)

    def every(self, interval: float, *, events: bool) -> float:
        """Seconds between whole-side looks: the safety net with events, else the poll."""
        if events:
            return max(SAFETY_MIN, self.seconds / SAFETY_SHARE)
        # Half seconds: small jitter in the cost does not move the interval (nor log lines).
        return max(interval, math.ceil(self.seconds / POLL_SHARE * 2) / 2)
