"""The mass-deletion guard: which deletions may go through now, and which are held (pure).

Deletions come in bursts (Explorer deleting a folder file by file, ``rm -rf``, a share that
lists nothing): a burst is a run of deletions each within ``window`` seconds of the last.
A deletion is held when its burst, counted with every deletion held and every one still
waiting for its confirmation, would

- empty the side it comes from (the other side still tracks files);
- delete more than ``fraction`` of the files agreed before the burst began (files created
  during the burst are subtracted: a system that writes and deletes as it goes is no burst);
- delete more than ``rate`` files within ``window`` seconds, whatever the fraction.

Fewer than ``min_held`` files are never held (a small folder, check-sync's cleanup). What is
held stays held (a later, smaller batch does not let it through) until ``release``, or until
the path comes back or is gone on both sides (``forget``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW = 10.0
MIN_HELD = 10


@dataclass
class DeletionGuard:
    """Decides per batch; the caller says what it propagated, created and forgot."""

    fraction: float = 0.5
    rate: int = 100
    window: float = WINDOW
    min_held: int = MIN_HELD
    held: set[str] = field(default_factory=set)
    released: set[str] = field(default_factory=set)
    #: Released paths the last batch let through: they do not count in the burst.
    consented: set[str] = field(default_factory=set)
    #: The burst: when its last deletion was asked for, files agreed when it began,
    #: files propagated and created since.
    last: float = float("-inf")
    baseline: int = 0
    deleted: int = 0
    created: int = 0
    #: (time, files) of what was propagated within the last window.
    recent: deque[tuple[float, int]] = field(default_factory=deque)

    def release(self) -> int:
        """Let what is held now through the next time it comes; how many that is."""
        self.released |= self.held
        self.held.clear()
        return len(self.released)

    def forget(self, path: str) -> None:
        """``path`` came back, or is gone on both sides: it is no longer held or released."""
        self.held.discard(path)
        self.released.discard(path)

    def note_created(self, files: int = 1) -> None:
        """Files newly agreed (a burst that also creates is smaller by as many)."""
        if self.deleted or self.held:
            self.created += files

    def assess(self, now: float, files: set[str], *, tracked: int, waiting: int = 0,
               source_empty: bool = False, source: str = "") -> tuple[set[str], set[str], str]:
        """Split the files a batch would delete into (allowed, held, why held).

        ``tracked``: files agreed now; ``waiting``: deletions seen but not yet confirmed
        (they belong to the burst); ``source_empty``: the side the deletions come from
        holds nothing.
        """
        if not files:
            return set(), set(), ""
        if now - self.last > self.window:  # a new burst: count from what is agreed now
            self.baseline, self.deleted, self.created = tracked, 0, 0
        self.last = now
        while self.recent and now - self.recent[0][0] >= self.window:
            self.recent.popleft()
        released = files & self.released
        self.released -= released
        self.consented = released
        candidates = files - released
        already = candidates & self.held
        new = candidates - already
        burst = max(0, self.deleted - self.created) + len(self.held | new) + waiting
        within = sum(n for _, n in self.recent) + len(self.held | new) + waiting
        why = ""
        if new and burst >= self.min_held:
            if source_empty and tracked:
                why = f"the {source} side is empty" if source else "the side is empty"
            elif burst > self.fraction * max(self.baseline, 1):
                why = f"{burst} of {self.baseline} files would be deleted"
            elif within > self.rate:
                why = f"{within} files would be deleted within {self.window:.0f}s"
        if why or already:
            held = already | (new if why else set())
            self.held |= held
            allowed = released | (new - held)
        else:
            held, allowed = set(), released | new
        return allowed, held, why or ("held until `invoke release`" if held else "")

    def propagated(self, now: float, paths: set[str]) -> None:
        """These deletions went through: they count in the burst and the window (released ones not)."""
        files = len(paths - self.consented)
        if files:
            self.deleted += files
            self.recent.append((now, files))
