"""Change hints from the tester's machine: an append-only journal inside each NAS folder.

9p carries no change events, so the host watcher (``invoke watch``) writes them into the
share: one JSON line per batch of changed paths (``{"paths": [...], "closed": [...]}``, closed:
those whose writer closed them last, where the host reports it), a heartbeat line
every ``BEAT`` seconds and ``{"rescan": true}`` when it cannot say what changed (it just
started, or too much changed at once). The agent reads what was appended since its last look,
at the cost of one ``stat`` when nothing was. The journal is a hint, never the truth: the
agent still polls as a safety net, and at its interval whenever the journal has been silent
for ``STALE`` seconds (by the agent's own clock: the laptop's and the VM's clocks may differ).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from filesim.sync.status import HIDDEN

JOURNAL = f"{HIDDEN}/journal"
BEAT = 2.0
STALE = 10.0
#: Past this size the watcher starts the journal over (with a rescan hint).
ROTATE_BYTES = 1 << 20
#: More changed paths than this in one batch become one rescan hint.
MAX_PATHS = 5000
#: The agent reads at most this much per look (a long backlog is a rescan anyway).
MAX_READ = 4 << 20


@dataclass
class Hints:
    """What the journal said since the last look."""

    paths: set[str] = field(default_factory=set)
    #: Of ``paths``, those closed after writing (complete: no settle wait).
    closed: set[str] = field(default_factory=set)
    rescan: bool = False


def valid_hint(path: object) -> bool:
    """A relative POSIX path without empty, ``.`` or ``..`` parts (anything else is ignored)."""
    return (isinstance(path, str) and 0 < len(path) <= 4096 and not path.startswith("/")
            and all(part not in ("", ".", "..") for part in path.split("/")))


class JournalReader:
    """The agent's side: new hints per look, and whether the watcher is alive."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic):
        self.path = path
        self.clock = clock
        self.offset: int | None = None
        self.seen: tuple[int, int] | None = None
        self.last_growth: float | None = None
        self.rest = b""

    @property
    def fresh(self) -> bool:
        """Whether the watcher wrote within ``STALE`` seconds (hints can be relied on)."""
        return self.last_growth is not None and self.clock() - self.last_growth < STALE

    def stale_at(self) -> float:
        """When a fresh journal turns stale if it does not grow (never, if it is stale)."""
        if self.last_growth is None or not self.fresh:
            return float("inf")
        return self.last_growth + STALE

    def changed(self) -> bool:
        """Whether the journal looks different since the last read (one stat)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return self.seen is not None
        return (st.st_size, st.st_mtime_ns) != self.seen

    def read(self) -> Hints:
        """What was appended since the last call (the first call only takes the position)."""
        hints = Hints()
        try:
            st = os.stat(self.path)
        except OSError:
            self.seen = None
            return hints
        seen = (st.st_size, st.st_mtime_ns)
        if seen == self.seen:
            return hints
        self.seen = seen
        if self.offset is None:
            self.offset = st.st_size  # what was written before the agent started is not news
            return hints
        self.last_growth = self.clock()
        if st.st_size < self.offset:  # started over: what was appended before is unknown
            self.offset, self.rest, hints.rescan = 0, b"", True
        elif st.st_size == self.offset:
            return hints  # touched, not appended to
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return hints
        try:  # only what was appended: a heartbeat is a few bytes
            data = os.pread(fd, min(MAX_READ, st.st_size - self.offset), self.offset)
        except OSError:
            return hints
        finally:
            os.close(fd)
        self.offset += len(data)
        if st.st_size - self.offset > 0 and len(data) == MAX_READ:
            hints.rescan = True  # a backlog this long: look at everything instead
        *lines, self.rest = (self.rest + data).split(b"\n")
        for line in lines:
            self._parse(line, hints)
        return hints

    @staticmethod
    def _parse(line: bytes, hints: Hints) -> None:
        if not line.strip():
            return
        try:
            record = json.loads(line)
        except ValueError:
            hints.rescan = True
            return
        if not isinstance(record, dict):
            hints.rescan = True
            return
        if record.get("rescan"):
            hints.rescan = True
        paths = record.get("paths", [])
        if not isinstance(paths, list):
            hints.rescan = True
            return
        for path in paths:
            if valid_hint(path):
                hints.paths.add(path)
                hints.closed.discard(path)  # a later line about it: written again
            else:
                hints.rescan = True
        closed = record.get("closed", [])
        if isinstance(closed, list):
            hints.closed.update(p for p in closed if valid_hint(p) and p in hints.paths)


class JournalWriter:
    """The watcher's side: appends records to one NAS folder's journal."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / JOURNAL

    def changed(self, paths: Iterable[str], closed: Iterable[str] = ()) -> None:
        """Hint that ``paths`` (relative, POSIX separators) changed; ``closed`` ones are complete."""
        batch = sorted(set(paths))
        if len(batch) > MAX_PATHS:
            self.rescan(f"{len(batch)} paths changed at once")
        elif batch:
            record: dict[str, object] = {"t": round(time.time(), 3), "paths": batch}
            done = sorted(set(closed) & set(batch))
            if done:
                record["closed"] = done
            self._append(record)

    def beat(self) -> None:
        """Say the watcher is alive."""
        self._append({"t": round(time.time(), 3)})

    def rescan(self, reason: str) -> None:
        """Hint that anything may have changed."""
        self._append({"t": round(time.time(), 3), "rescan": True, "reason": reason})

    def _append(self, record: dict[str, object]) -> None:
        line = (json.dumps(record, ensure_ascii=True) + "\n").encode()
        self.path.parent.mkdir(exist_ok=True)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size > ROTATE_BYTES:
            line = (json.dumps({"t": record["t"], "rescan": True, "reason": "journal started over"})
                    + "\n").encode() + line
            mode = "wb"
        else:
            mode = "ab"
        with open(self.path, mode) as journal:
            journal.write(line)
