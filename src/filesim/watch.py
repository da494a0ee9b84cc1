"""The host watcher: change hints for the sync agents, from where the NAS folders live.

Runs on the tester's machine (Windows: ReadDirectoryChangesW; Linux: inotify; both through
watchdog) and writes what changed in each NAS folder into that folder's journal
(sync/journal.py), coalesced over ``COALESCE`` seconds, with a heartbeat. The agents read
the journals through the share, so changes reach NFS without waiting for a poll.

``python -m filesim.watch FOLDER...`` runs it in the foreground; the tasks run it in the
background (``start_background``, background.py) and find it through its state file. It stops
on SIGTERM/Ctrl-C, or when a ``<state>.stop`` file appears.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filesim.background import Background, Beat
from filesim.sync.journal import BEAT, STALE, JournalWriter
from filesim.sync.status import HIDDEN, MARKER
from filesim.sync.tree import TEMP_NAME

COALESCE = 0.05
STATE_FILE = ".filesim-watch.json"
LOG_FILE = ".filesim-watch.log"


def hint_path(folder: Path, raw: str | bytes) -> str | None:
    """The path an event names, relative to the NAS folder with '/' separators; None if ignored."""
    try:
        rel = Path(os.fsdecode(raw)).relative_to(folder)
    except ValueError:
        return None
    parts = rel.parts
    if not parts or parts[0] in (HIDDEN, MARKER) or TEMP_NAME.match(parts[-1]):
        return None  # the journal, the marker, the agents' temp files
    return "/".join(parts)


class Watcher:
    """Watches NAS folders and writes their journals until ``stop`` is set."""

    def __init__(self, folders: list[Path], state_file: Path | None = None, token: str = ""):
        self.folders = [f.resolve() for f in folders]
        self.beat = Beat(state_file, token)
        self.writers = {f: JournalWriter(f) for f in self.folders}
        self.changed: dict[Path, set[str]] = {f: set() for f in self.folders}
        #: Of those, the ones whose last event closed them after writing (or moved them there).
        self.closed: dict[Path, set[str]] = {f: set() for f in self.folders}
        self.lock = threading.Lock()
        #: Folders whose events were lost since the last flush, and why.
        self.rescans: dict[Path, str] = {}
        #: Folders deleted while watched (their watch ended with them).
        self.gone: set[Path] = set()
        self.stop = threading.Event()
        #: Set by an event (or a stop): the loop sleeps on it, so an idle watcher wakes per beat only.
        self.wake = threading.Event()
        self.errors: dict[Path, str] = {}

    def run(self) -> None:
        """Watch until stopped; every folder's agent is told to rescan first."""
        from watchdog import events as kinds
        from watchdog.observers import Observer

        observer = Observer()
        wanted = [kinds.FileCreatedEvent, kinds.DirCreatedEvent, kinds.FileDeletedEvent,
                  kinds.DirDeletedEvent, kinds.FileModifiedEvent, kinds.FileMovedEvent,
                  kinds.DirMovedEvent, kinds.FileClosedEvent]
        if hasattr(kinds, "EventsLostEvent"):  # watchdog 7: an overflow says so, once
            wanted.append(kinds.EventsLostEvent)
        watches = {folder: self._watch(observer, folder, wanted) for folder in self.folders}
        observer.start()
        try:
            for folder, writer in self.writers.items():
                self._write(folder, writer.rescan, "watcher started")
            next_beat = 0.0
            while not self.stop.is_set():
                if self.wake.wait(max(0.0, next_beat - time.monotonic())):
                    self.stop.wait(COALESCE)  # more events of the same burst join this batch
                    self.wake.clear()
                    self._flush()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + BEAT
                    for folder, (watch, identity) in list(watches.items()):
                        now = _identity(folder)
                        if now is not None and (identity != now or folder in self.gone):
                            # deleted and made again (its inode may be reused): watch the new one
                            self.gone.discard(folder)
                            with contextlib.suppress(Exception):
                                observer.unschedule(watch)
                            watches[folder] = self._watch(observer, folder, wanted)
                            self.lost(folder, "the folder was made again")
                    self._beat()
        finally:
            observer.stop()
            observer.join(timeout=5)
            self._flush()
            with contextlib.suppress(OSError):
                self.beat.done()

    def _watch(self, observer: Any, folder: Path, wanted: list[Any]) -> tuple[Any, Any]:
        """Watch ``folder`` (if it exists): (the watch, which folder it is)."""
        identity = _identity(folder)
        try:
            return observer.schedule(self.handler(folder), str(folder), recursive=True,
                                     event_filter=wanted), identity
        except OSError:  # gone: watched once it is made again
            return None, None

    def handler(self, folder: Path) -> Any:
        """The watchdog handler of one NAS folder: each event becomes a hint (or a rescan)."""
        from watchdog.events import FileSystemEventHandler

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.event_type == "events_lost":  # ReadDirectoryChangesW or inotify overflowed
                    watcher.lost(folder)
                    return
                if event.event_type == "deleted" and os.fsdecode(event.src_path) == str(folder):
                    watcher.gone.add(folder)  # the folder itself: watched again once it is back
                    return
                if event.is_directory and event.event_type == "modified":
                    return  # a folder's own mtime: its entries have events of their own
                for raw in (event.src_path, getattr(event, "dest_path", "")):
                    rel = hint_path(folder, raw) if raw else None
                    if rel is not None:
                        watcher.note(folder, rel, closed=event.event_type in ("closed", "moved"))

        return Handler()

    def lost(self, folder: Path, why: str = "events lost (an overflow)") -> None:
        """Events of ``folder`` were lost: its agent is told to rescan (not to wait a minute)."""
        with self.lock:
            self.rescans[folder] = why
        self.wake.set()

    def run_until_interrupted(self) -> None:
        """Run in this thread until Ctrl-C or SIGTERM."""
        runner = threading.Thread(target=self.run, name="filesim-watch")
        runner.start()
        try:
            while runner.is_alive():
                runner.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.request_stop()
            runner.join()

    def request_stop(self) -> None:
        """End ``run`` (from a signal handler or another thread)."""
        self.stop.set()
        self.wake.set()

    def note(self, folder: Path, rel: str, *, closed: bool) -> None:
        """Remember that ``rel`` changed (and whether its writer is done) until the next flush."""
        with self.lock:
            self.changed[folder].add(rel)
            if closed:
                self.closed[folder].add(rel)
            else:
                self.closed[folder].discard(rel)
        self.wake.set()

    def _flush(self) -> None:
        with self.lock:
            batches = {f: (paths, self.closed[f]) for f, paths in self.changed.items() if paths}
            for folder in batches:
                self.changed[folder], self.closed[folder] = set(), set()
            rescans, self.rescans = self.rescans, {}
        for folder, why in rescans.items():
            self._write(folder, self.writers[folder].rescan, why)
        for folder, (paths, closed) in batches.items():
            self._write(folder, self.writers[folder].changed, paths, closed)

    def _beat(self) -> None:
        for folder, writer in self.writers.items():
            if (folder / MARKER).exists():  # a folder without its marker is no share: no journal
                self._write(folder, writer.beat)
        try:
            stop = self.beat.write(folders=[str(f) for f in self.folders],
                                   errors={str(f): e for f, e in self.errors.items()})
        except OSError as exc:  # the data root is gone for a moment: the next beat writes it
            print(f"filesim watch: state: {exc}", file=sys.stderr, flush=True)
            stop = False
        if stop:
            self.request_stop()

    def _write(self, folder: Path, write: Any, *args: Any) -> None:
        try:
            write(*args)
            self.errors.pop(folder, None)
        except OSError as exc:
            if self.errors.get(folder) != str(exc):
                print(f"filesim watch: {folder}: {exc}", file=sys.stderr, flush=True)
            self.errors[folder] = str(exc)


def _identity(folder: Path) -> tuple[int, int] | None:
    """Which folder a path names now (a folder deleted and made again is another one)."""
    try:
        st = folder.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


# -- in the background, for the tasks ---------------------------------------------------------


@dataclass
class WatcherInfo:
    """What ``invoke status`` shows of the host watcher (``ours``: see background.Seen)."""

    running: bool
    pid: int | None
    folders: list[str]
    log: str
    detail: str = ""
    token: str = ""
    identity: str | None = None
    ours: bool = False


def background(root: Path) -> Background:
    """The background watcher of the NAS folders under ``root``."""
    return Background("host watcher", root / STATE_FILE, root / LOG_FILE, stale=STALE)


def info(root: Path) -> WatcherInfo:
    """The background watcher of the NAS folders under ``root``, from its state file."""
    seen = background(root).seen()
    detail = seen.detail
    if seen.running:
        errors = seen.state.get("errors") or {}
        detail = "; ".join(f"{Path(f).name}: {e}" for f, e in errors.items())
    return WatcherInfo(seen.running, seen.pid, list(seen.state.get("folders") or []),
                       str(root / LOG_FILE), detail, seen.token, seen.identity, seen.ours)


def start_background(root: Path, folders: list[Path]) -> WatcherInfo:
    """Start the watcher for ``folders`` unless it already runs for exactly them."""
    current = info(root)
    wanted = sorted(str(f.resolve()) for f in folders)
    if current.running and sorted(current.folders) == wanted:
        return current
    background(root).start("filesim.watch", wanted)
    return info(root)


def stop_background(root: Path, timeout: float = 10.0) -> str | None:
    """Stop the background watcher of ``root``: what was done, in words (None: nothing to do)."""
    done = background(root).stop(timeout)
    return done and done.replace("stopped the host watcher", f"stopped the host watcher of {root}")


def main(argv: list[str] | None = None) -> int:
    """``python -m filesim.watch``: watch NAS folders in the foreground."""
    parser = argparse.ArgumentParser(prog="filesim watch", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="NAS folders (each with its marker)")
    parser.add_argument("--state", type=Path, help="rewrite this JSON file every beat (pid, folders)")
    parser.add_argument("--token", default="", help="written into the state: how the tasks know it")
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.folders if not (f / MARKER).is_file()]
    if missing:
        parser.error(f"not NAS folders (no {MARKER}): {', '.join(missing)}; run `invoke setup` first")
    watcher = Watcher(args.folders, args.state, args.token)
    # SIGTERM as Ctrl-C: the main thread only waits for the watching thread, so the interrupt
    # never lands inside a lock the handler's own stop would need.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"filesim watch: pid {os.getpid()}, {len(watcher.folders)} folder(s)", flush=True)
    watcher.run_until_interrupted()
    return 0


if __name__ == "__main__":
    sys.exit(main())
