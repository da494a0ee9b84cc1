"""NFS-side change events, from inotifywait (inotify-tools) running beside the agent.

inotifywait watches the export recursively in C (new folders get watches at once, moved
folders keep their paths) and drops the agent's temp files before they reach Python, so the
agent reads one NUL-terminated record per event. With watchdog each event cost ~100 µs of
Python over three threads, and the agent's own copies into the export raised several events
each: a seed of 20,000 files took 3 times as long with events on as off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

from filesim.nas.faults import BALLAST
from filesim.sync.process import Backoff, die_with_parent
from filesim.sync.tree import Tree

#: Queued (instead of a path) when events may have been lost: the export needs a rescan.
RESCAN = "\0rescan"
#: Queued when the agent's requests folder changed: the loop looks at it at once.
REQUESTS_CHANGED = "\0requests"
EVENTS = "create,delete,modify,attrib,close_write,moved_from,moved_to"
READY_LINE = b"Watches established."


class Events:
    """Paths from the reader thread to the agent's loop, which waits on them with one poll(2).

    Each put also writes a byte into a pipe (none when the pipe is full: one byte wakes the
    loop as well as many). An idle wake-up costs a poll instead of a lock dance in Python.
    The pipe lives as long as the agent's process (the reader thread may put until it ends).
    """

    def __init__(self):
        self._items: deque[str] = deque()
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poller = select.poll()
        self._poller.register(self._wake_read, select.POLLIN)
        self._also: int | None = None

    def close(self) -> None:
        """Close the pipe (an agent run in a process of others: tests, a one-shot)."""
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def wake_on(self, fd: int | None) -> None:
        """Also end a wait when ``fd`` is readable (one at a time; None: no other)."""
        if self._also is not None:
            self._poller.unregister(self._also)
        self._also = fd
        if fd is not None:
            self._poller.register(fd, select.POLLIN)

    def put(self, item: str) -> None:
        """Queue ``item`` (a path, RESCAN or REQUESTS_CHANGED) and wake the loop."""
        self._items.append(item)
        self.wake()

    def wake(self) -> None:
        """End a wait now (a signal handler may call it: it takes no lock)."""
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"\0")

    def wait(self, timeout: float) -> bool:
        """Whether something is queued (or the other fd readable) now or within ``timeout`` seconds."""
        return bool(self._items) or bool(self._poller.poll(timeout * 1000))

    def empty(self) -> bool:
        """Whether nothing is queued."""
        return not self._items

    def clear_wake(self) -> None:
        """Forget wake-up bytes when nothing is queued (an item put since is still waited for)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_read, 4096):
                pass

    def drain(self) -> list[str]:
        """Everything queued, in order (a byte left behind only wakes the loop once for nothing)."""
        self.clear_wake()
        items = []
        with contextlib.suppress(IndexError):
            while True:
                items.append(self._items.popleft())
        return items


class NfsEvents:
    """Feeds changed export paths (relative) into ``events``; RESCAN when some may be lost.

    Paths closed after writing or renamed into place are added to ``complete`` (no settle
    wait), and taken out again by a later write. A change in ``requests`` (the agent's own
    folder, watched by the same process) queues REQUESTS_CHANGED.
    """

    def __init__(self, tree: Tree, events: Events, complete: set[str],
                 log: logging.Logger, requests: Path | None = None):
        self.tree = tree
        self.root = tree.root
        self.events = events
        self.complete = complete
        self.log = log
        self.requests = requests
        self._prefix = os.fsencode(self.root) + b"/"
        self._requests_prefix = os.fsencode(requests) + b"/" if requests is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        #: Whether events are coming (else the export is found by rescans). Kept by start, stop
        #: and the reader thread, which sees inotifywait end: no waitpid to ask.
        self.running = False
        self.restarts = Backoff(log, "nfs events", "changes over NFS are found by rescans until it works")
        #: inotifywait's last message on stderr.
        self.said: str | None = None

    def start(self, timeout: float = 60.0) -> bool:
        """Start watching; True once every folder is watched. A failure is logged, not raised."""
        command = ["inotifywait", "--monitor", "--recursive", "--no-dereference",
                   "--format", "%e %w%f%0", "--no-newline", "--event", EVENTS,
                   "--exclude", exclude(self.tree.temp, str(self.root)), str(self.root)]
        if self.requests is not None:
            command.append(str(self.requests))
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       preexec_fn=die_with_parent)
        except OSError as exc:
            return self._failed(f"inotifywait cannot run ({exc.strerror}): install inotify-tools")
        assert process.stdout is not None and process.stderr is not None
        ready = threading.Event()
        threading.Thread(target=self._read_errors, args=(process, ready), daemon=True).start()
        if not ready.wait(timeout) or process.poll() is not None:
            process.kill()
            process.wait()
            return self._failed(self.said or f"inotifywait did not watch {self.root} within {timeout:.0f}s")
        self.process, self.running = process, True
        threading.Thread(target=self._read_events, args=(process,), daemon=True).start()
        self.restarts.works("inotifywait watching again")
        return True

    def restart_due(self) -> float:
        """When ``restart_if_due`` has work (monotonic clock; never while running)."""
        return float("inf") if self.running else self.restarts.at

    def restart_if_due(self) -> bool:
        """Start again after a failure once the back-off ran out; True if (re)started now."""
        if self.running or time.monotonic() < self.restarts.at:
            return False
        return self.start()

    def stop(self) -> None:
        """Stop watching."""
        process, self.process, self.running = self.process, None, False
        if process is not None and process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=2)
            if process.poll() is None:
                process.kill()
                process.wait()

    def _failed(self, error: str) -> bool:
        self.restarts.failed(error)
        return False

    def _read_errors(self, process: subprocess.Popen[bytes], ready: threading.Event) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            text = line.strip()
            if text == READY_LINE:
                ready.set()
            elif text and not text.startswith(b"Setting up watches"):
                self.said = os.fsdecode(text)
                if ready.is_set():
                    self.log.warning("nfs events", extra={"detail": self.said})
                    self.events.put(RESCAN)
        ready.set()  # the process ended: start() sees it

    def _read_events(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        fd = process.stdout.fileno()
        rest = b""
        while chunk := os.read(fd, 1 << 16):
            *records, rest = (rest + chunk).split(b"\0")
            for record in records:
                self._event(record)
        process.wait()
        if process is not self.process:
            return  # stopped on purpose (stop() forgets the process first)
        self._failed(f"inotifywait exited ({process.returncode}): {self.said or 'no message'}")
        self.running = False  # after _failed: a restart waits for the back-off it sets
        self.events.put(RESCAN)

    def _event(self, record: bytes) -> None:
        kinds, _, path = record.partition(b" ")
        if self._requests_prefix is not None and path.startswith(self._requests_prefix):
            self.events.put(REQUESTS_CHANGED)
            return
        prefix = self._prefix
        if b"Q_OVERFLOW" in kinds or not path.startswith(prefix):
            self.events.put(RESCAN)  # the kernel dropped events, or the export itself changed
            return
        rel = os.fsdecode(path[len(prefix):])
        if self.tree.ignored_path(rel):
            return
        if b"CLOSE_WRITE" in kinds or b"MOVED_TO" in kinds:
            self.complete.add(rel)
        elif b"MODIFY" in kinds or b"CREATE" in kinds:
            self.complete.discard(rel)
        self.events.put(rel)


def exclude(temp: str, root: str) -> str:
    """Inotifywait's --exclude (POSIX extended regex, whole path).

    It leaves out the agent's own temp files, and the ballast of a ``full`` fault (a quarter
    of a million files, none of them to sync).
    """
    return f"/{_literal(temp)}[^/]*$|^{_literal(f'{root}/{BALLAST}')}(/|$)"


def _literal(text: str) -> str:
    """``text`` matched as it is by a POSIX extended regex."""
    return "".join(f"\\{c}" if c in ".[]()*+?{}|^$\\" else c for c in text)

