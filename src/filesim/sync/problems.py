"""Paths that cannot be synced now: why, since when, and when to try again (with back-off).

A failing path never stops the rest and is never retried in a hot loop: each failure doubles
its wait (1 s … ``CEILING``); a path whose reason is policy (a symlink, a name Windows cannot
hold in report mode) waits the ceiling at once. Each change of a problem is logged once, and
the problems of one batch that share a side and reason are one line (how many, three examples):
a full export must not log a line per file. Status lists every path.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from filesim.sync.names import display

FIRST_WAIT = 1.0
CEILING = 60.0


@dataclass
class Problem:
    """One path that cannot be synced now."""

    side: str
    path: str
    reason: str
    since: float
    last: float
    next_retry: float
    attempts: int = 1
    #: Data exists on ``side`` only (a flush cannot be clean while this is unresolved).
    unsynced: bool = True
    #: Logged by the caller as a group (held deletions): no line per path.
    quiet: bool = False
    #: Something to know that does not stop syncing (a name shown differently on Windows).
    notice: bool = False

    def as_dict(self) -> dict[str, object]:
        """The problem as status.json lists it."""
        return {"side": self.side, "path": display(self.path), "reason": self.reason,
                "since": round(self.since, 3), "last": round(self.last, 3),
                "next_retry": None if self.notice else round(self.next_retry, 3),
                "attempts": self.attempts, "blocks": not self.notice}


class Problems:
    """The current problems, keyed by path."""

    def __init__(self, log: logging.Logger, clock: Callable[[], float] = time.time):
        self.log = log
        self.clock = clock
        self._by_path: dict[str, Problem] = {}
        self._notices: dict[str, Problem] = {}
        #: What to log at the next ``flush_log``: (event, side, reason) → paths, and extras.
        self._news: dict[tuple[str, str, str], list[str]] = {}
        self._extra: dict[tuple[str, str, str], dict[str, object]] = {}

    def __len__(self) -> int:
        return len(self._by_path) + len(self._notices)

    def __iter__(self) -> Iterator[Problem]:
        everything = [*self._by_path.values(), *self._notices.values()]
        return iter(sorted(everything, key=lambda p: (p.since, p.path)))

    def notice(self, side: str, path: str, reason: str) -> None:
        """Record (and log once) something to know about ``path`` that does not stop syncing."""
        known = self._notices.get(path)
        if known is not None and known.reason == reason:
            return
        now = self.clock()
        self._notices[path] = Problem(side, path, reason, now, now, now, notice=True, unsynced=False)
        self.log.warning("notice", extra={"side": side, "path": display(path), "reason": reason})

    def clear_notice(self, path: str) -> None:
        """The notice about ``path`` no longer holds."""
        self._notices.pop(path, None)

    def get(self, path: str) -> Problem | None:
        """The problem recorded for ``path``."""
        return self._by_path.get(path)

    def report(self, side: str, path: str, reason: str, *, policy: bool = False,
               unsynced: bool = True, quiet: bool = False) -> None:
        """Record that ``path`` failed on ``side`` for ``reason``; back off before the next try."""
        now = self.clock()
        problem = self._by_path.get(path)
        if problem is None or problem.reason != reason or problem.side != side:
            attempts = 1 if problem is None else problem.attempts + 1
            wait = CEILING if policy else FIRST_WAIT
            self._by_path[path] = Problem(side, path, reason, now if problem is None else problem.since,
                                          now, now + wait, attempts, unsynced, quiet)
            if not quiet:
                self._note("problem", side, reason, path, retry_in=wait)
            return
        problem.attempts += 1
        problem.last = now
        wait = CEILING if policy else min(CEILING, FIRST_WAIT * 2 ** (problem.attempts - 1))
        problem.next_retry = now + wait

    def resolve(self, path: str) -> None:
        """``path`` synced (or vanished): forget its problem."""
        problem = self._by_path.pop(path, None)
        if problem is not None and not problem.quiet:
            self._note("problem resolved", problem.side, problem.reason, path,
                       after=round(self.clock() - problem.since, 1))

    def _note(self, event: str, side: str, reason: str, path: str, **extra: object) -> None:
        key = (event, side, reason)
        self._news.setdefault(key, []).append(path)
        self._extra.setdefault(key, extra)

    def flush_log(self) -> None:
        """Log what changed since the last flush: one line per event, side and reason."""
        news, self._news, extras, self._extra = self._news, {}, self._extra, {}
        for (event, side, reason), paths in news.items():
            level = logging.WARNING if event == "problem" else logging.INFO
            if len(paths) == 1:
                self.log.log(level, event, extra={"side": side, "path": display(paths[0]),
                                                  "reason": reason, **extras[event, side, reason]})
            else:
                self.log.log(level, f"{event}s" if event == "problem" else "problems resolved",
                             extra={"side": side, "reason": reason, "count": len(paths),
                                    "examples": [display(p) for p in paths[:3]]})

    def retry_now(self, paths: set[str]) -> None:
        """Let these paths be tried at once (their reason may be gone: a release, a request)."""
        for path in paths:
            problem = self._by_path.get(path)
            if problem is not None:
                problem.next_retry = self.clock()

    def waiting(self, path: str) -> bool:
        """Whether ``path`` must not be tried before its next retry."""
        problem = self._by_path.get(path)
        return problem is not None and self.clock() < problem.next_retry

    def under(self, path: str) -> list[str]:
        """Problem paths at or below ``path``."""
        prefix = path + "/"
        return [p for p in self._by_path if p == path or p.startswith(prefix)]

    def due(self) -> list[str]:
        """Paths whose next retry has come."""
        now = self.clock()
        return [p for p, problem in self._by_path.items() if problem.next_retry <= now]

    def next_retry(self) -> float:
        """The earliest next retry (wall clock), or infinity."""
        return min((p.next_retry for p in self._by_path.values()), default=float("inf"))

    def unsynced(self) -> list[Problem]:
        """Problems that leave data on one side only."""
        return [p for p in self._by_path.values() if p.unsynced]

    def blocking(self) -> int:
        """How many paths do not sync now (notices left out)."""
        return len(self._by_path)

    def as_list(self, limit: int = 500) -> list[dict[str, object]]:
        """The problems as status.json lists them: the first ``limit`` (``len`` counts all).

        A full export may have 100,000; status.json is rewritten every few seconds.
        """
        return [p.as_dict() for p in itertools.islice(self, limit)]
