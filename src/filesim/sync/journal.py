"""Change hints from the tester's machine: an append-only journal inside each NAS folder.

9p carries no change events, so the host watcher (``invoke watch``) writes them into the
share: one JSON line per batch of changed paths (``{"paths": [...], "closed": [...]}``, closed:
those whose writer closed them last, where the host reports it), a heartbeat line
every ``BEAT`` seconds and ``{"rescan": true}`` when it cannot say what changed (it just
started, or too much changed at once). The agent is passed what is appended by ``tail``, so
an idle agent only wakes for the heartbeat. The journal is a hint, never the truth: the
agent still polls as a safety net, and at its interval whenever the journal has been silent
for ``STALE`` seconds (by the agent's own clock: the laptop's and the VM's clocks may differ).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from filesim.sync.process import Backoff, die_with_parent
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
#: How often tail looks at the journal (seconds): most of the hinted paths' latency.
FOLLOW_EVERY = 0.25


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
    """The agent's side: new hints per look, and whether the watcher is alive.

    GNU ``tail`` follows the journal (by name, so a journal started over or made anew is
    followed too) and polls it in C every ``FOLLOW_EVERY`` seconds: its inotify is switched
    off, as the host's writes over 9p raise no events in the VM. The agent's loop waits on
    tail's output with its other events, so an idle agent wakes only for the heartbeat.
    tail's own notices (a journal truncated, replaced, gone) arrive as lines that are no
    record: each asks for a rescan, as does a tail that ended and was started again.
    """

    def __init__(self, path: Path, log: logging.Logger, wake_on: Callable[[int | None], None],
                 clock: Callable[[], float] = time.monotonic):
        self.path = path
        self.log = log
        self.wake_on = wake_on
        self.clock = clock
        self.process: subprocess.Popen[bytes] | None = None
        self.last_growth: float | None = None
        self.rest = b""
        self.restarts = Backoff(log, "windows hints", "tail is started again after a back-off; "
                                "meanwhile the Windows side is polled", clock)
        #: tail's last notice (named if it ends).
        self.said = b""

    @property
    def fresh(self) -> bool:
        """Whether the watcher wrote within ``STALE`` seconds (hints can be relied on)."""
        return self.last_growth is not None and self.clock() - self.last_growth < STALE

    def stale_at(self) -> float:
        """When a fresh journal turns stale if it does not grow (never, if it is stale)."""
        if self.last_growth is None or not self.fresh:
            return float("inf")
        return self.last_growth + STALE

    def start(self) -> bool:
        """Follow from the journal's end: what is in it already, the agent's pass sees."""
        try:
            start = os.stat(self.path).st_size
        except OSError:
            start = 0
        try:
            process = subprocess.Popen(  # three dashes: GNU's (and uutils') switch
                ["tail", "---disable-inotify", "--follow=name", "--retry",
                 f"--sleep-interval={FOLLOW_EVERY}", f"--bytes=+{start + 1}", str(self.path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent)
        except OSError as exc:
            return self._ended(f"tail cannot run ({exc.strerror}): install coreutils")
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        self.process, self.rest = process, b""
        self.wake_on(process.stdout.fileno())
        return True

    def stop(self) -> None:
        """Stop following."""
        process, self.process = self.process, None
        if process is not None:
            self.wake_on(None)
            process.kill()
            process.wait()
            assert process.stdout is not None
            process.stdout.close()

    def restart_due(self) -> float:
        """When ``read`` starts tail again (monotonic clock; never while it runs or before it failed)."""
        return float("inf") if self.process is not None or not self.restarts.at else self.restarts.at

    def read(self) -> Hints:
        """What tail passed on since the last call (none waits: a read that would block is empty)."""
        hints = Hints()
        if self.process is None:
            if self.clock() >= self.restart_due() and self.start():
                hints.rescan = True  # what was written while nobody followed is unknown
            return hints
        assert self.process.stdout is not None
        data = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.process.stdout.fileno(), 1 << 16):
                data += chunk
                if len(data) >= MAX_READ:
                    hints.rescan = True  # a backlog this long: look at everything instead
                    break
            else:
                self._ended(f"tail exited: {os.fsdecode(self.said) or 'no message'}")
                hints.rescan = True
        if data:
            *lines, self.rest = (self.rest + data).split(b"\n")
            for line in lines:
                if line.startswith(b"tail: "):
                    self.said = line
                    hints.rescan = True  # the journal was truncated, replaced or is gone
                elif self._parse(line, hints):
                    self.last_growth = self.clock()
                    self.restarts.works("tail following again")  # only now: it may start and die
        return hints

    def _ended(self, error: str) -> bool:
        self.stop()
        self.restarts.failed(error)
        return False

    @staticmethod
    def _parse(line: bytes, hints: Hints) -> bool:
        """Add one line's hints; whether it was a record (the watcher is alive)."""
        if not line.strip():
            return False
        try:
            record = json.loads(line)
        except ValueError:
            hints.rescan = True
            return False
        if not isinstance(record, dict):
            hints.rescan = True
            return False
        if record.get("rescan"):
            hints.rescan = True
        paths = record.get("paths", [])
        if not isinstance(paths, list):
            hints.rescan = True
            return True
        for path in paths:
            if valid_hint(path):
                hints.paths.add(path)
                hints.closed.discard(path)  # a later line about it: written again
            else:
                hints.rescan = True
        closed = record.get("closed", [])
        if isinstance(closed, list):
            hints.closed.update(p for p in closed if valid_hint(p) and p in hints.paths)
        return True


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
