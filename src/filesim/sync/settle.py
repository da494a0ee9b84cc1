"""Settling: a changed file is copied once it stopped changing, a deletion once seen twice."""

from __future__ import annotations

import time

from filesim.sync.items import OLD_ENOUGH, Pending, Seen
from filesim.sync.plan import NFS, WINDOWS
from filesim.sync.tree import Sig


class Settling:
    """The reconciler's part that holds changes until they settle (a mixin: see Reconciler)."""

    def _settled(self, side: str, path: str, sig: Sig | None) -> bool | str:
        """Whether a changed file may be copied, or a deletion (``sig`` None) propagated.

        True once stable for the settle time; for a file, "busy" once changing for longer
        than ``max_delay`` (a consistent version is published anyway); else False. A
        deletion is settled once it was seen twice, the settle time apart.
        """
        if self.settle == 0 or (sig is not None and (sig.is_dir or self.seeding)):
            # The seed runs before the export is served: a file still being written is copied
            # again once it changes, and holding every new file for a second look would cost
            # a record each (a seed of 250,000 files just written: 306 MiB instead of 106).
            return True
        now = self.clock()
        record = self.pending.get(path)
        if record is None:
            record = self.pending[path] = Pending(now)
        seen = record.side(side)
        if seen is None or seen.sig != sig:
            record.record(side, Seen(sig, now, seen.wall if seen else time.time()))
            age = time.time() - sig.mtime_ns / 1e9 if sig is not None else 0.0
            if sig is not None and (path in self.complete[side] or age >= (
                    self.settle if side == NFS else max(self.settle, OLD_ENOUGH))):
                # Its writer is done, or it is untouched for long enough: the settle time on
                # NFS (one clock); on Windows OLD_ENOUGH (whole seconds, another clock).
                return True
        elif now - seen.since >= self.settle:
            return True
        if sig is not None and now - record.first_seen >= self.settings.max_delay:
            return "busy"
        return False

    def _touch_pending(self, path: str) -> None:
        """A copy lost a race: keep the path pending, so it is retried after the settle time."""
        now = self.clock()
        record = self.pending.get(path)
        if record is None:
            self.pending[path] = Pending(now)
            return
        for side in (NFS, WINDOWS):
            seen = record.side(side)
            if seen is not None:
                record.record(side, seen._replace(since=now))

    def pending_paths(self) -> set[str]:
        """Paths changed on one side and not yet copied."""
        return set(self.pending)

    def next_settle_check(self) -> float:
        """When (monotonic) the next pending path may be ready."""
        starts = [r.stable_since() for path, r in self.pending.items()
                  if not self.problems.waiting(path)]
        return min(starts) + (self.settle or 0.05) if starts else float("inf")
