"""The host watcher: change hints for the sync agents, from where the NAS folders live.

Runs on the tester's machine (Windows: ReadDirectoryChangesW; Linux: inotify; both through
watchdog) and writes what changed in each NAS folder into that folder's journal
(sync/journal.py), coalesced over ``COALESCE`` seconds, with a heartbeat. The agents read
the journals through the share, so changes reach NFS without waiting for a poll.

``python -m filesim.watch --state FILE FOLDER...`` runs it in the foreground; the tasks run it
in the background (``start_background``) and find it through its state file, which it
rewrites every beat with its pid, its identity (start time) and the token the tasks gave it.
It stops on SIGTERM/Ctrl-C, or when a ``<state>.stop`` file appears (the way that also works
on Windows, where a detached process has no console to signal). The tasks signal a pid only
while it is still that process (``procs.is_ours``): a stale state file is just removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filesim import procs
from filesim.sync.journal import BEAT, STALE, JournalWriter
from filesim.sync.status import HIDDEN, MARKER, write_json_atomically
from filesim.sync.tree import TEMP_NAME

COALESCE = 0.05
STATE_FILE = ".filesim-watch.json"
LOG_FILE = ".filesim-watch.log"
START_TIMEOUT = 15.0


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
        self.state_file = state_file
        self.token = token
        self.identity = procs.identity(os.getpid())
        self.writers = {f: JournalWriter(f) for f in self.folders}
        self.changed: dict[Path, set[str]] = {f: set() for f in self.folders}
        #: Of those, the ones whose last event closed them after writing (or moved them there).
        self.closed: dict[Path, set[str]] = {f: set() for f in self.folders}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        #: Set by an event (or a stop): the loop sleeps on it, so an idle watcher wakes per beat only.
        self.wake = threading.Event()
        self.started = time.time()
        self.errors: dict[Path, str] = {}

    def run(self) -> None:
        """Watch until stopped; every folder's agent is told to rescan first."""
        from watchdog import events as kinds
        from watchdog.observers import Observer

        watcher = self

        class Handler(kinds.FileSystemEventHandler):
            def __init__(self, folder: Path):
                self.folder = folder

            def on_any_event(self, event: Any) -> None:
                if event.is_directory and event.event_type == "modified":
                    return  # a folder's own mtime: its entries have events of their own
                for raw in (event.src_path, getattr(event, "dest_path", "")):
                    rel = hint_path(self.folder, raw) if raw else None
                    if rel is not None:
                        watcher.note(self.folder, rel, closed=event.event_type in ("closed", "moved"))

        observer = Observer()
        wanted = [kinds.FileCreatedEvent, kinds.DirCreatedEvent, kinds.FileDeletedEvent,
                  kinds.DirDeletedEvent, kinds.FileModifiedEvent, kinds.FileMovedEvent,
                  kinds.DirMovedEvent, kinds.FileClosedEvent]
        for folder in self.folders:
            observer.schedule(Handler(folder), str(folder), recursive=True, event_filter=wanted)
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
                    self._beat()
        finally:
            observer.stop()
            observer.join(timeout=5)
            self._flush()
            if self.state_file is not None:
                with contextlib.suppress(OSError):
                    self.state_file.unlink()

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
        for folder, (paths, closed) in batches.items():
            self._write(folder, self.writers[folder].changed, paths, closed)

    def _beat(self) -> None:
        for folder, writer in self.writers.items():
            if (folder / MARKER).exists():  # a folder without its marker is no share: no journal
                self._write(folder, writer.beat)
        if self.state_file is not None:
            write_json_atomically(self.state_file, {
                "pid": os.getpid(), "identity": self.identity, "token": self.token,
                "started": self.started, "updated": time.time(),
                "folders": [str(f) for f in self.folders], "errors": {
                    str(f): e for f, e in self.errors.items()}})
            if self.state_file.with_name(self.state_file.name + ".stop").exists():
                self.request_stop()

    def _write(self, folder: Path, write: Any, *args: Any) -> None:
        try:
            write(*args)
            self.errors.pop(folder, None)
        except OSError as exc:
            if self.errors.get(folder) != str(exc):
                print(f"filesim watch: {folder}: {exc}", file=sys.stderr, flush=True)
            self.errors[folder] = str(exc)


# -- in the background, for the tasks ---------------------------------------------------------


@dataclass
class WatcherInfo:
    """What ``invoke status`` shows of the host watcher.

    ``ours``: the pid is still the watcher the state describes (identity and token match).
    """

    running: bool
    pid: int | None
    folders: list[str]
    log: str
    detail: str = ""
    token: str = ""
    identity: str | None = None
    ours: bool = False


def info(root: Path) -> WatcherInfo:
    """The background watcher of the NAS folders under ``root``, from its state file."""
    log = str(root / LOG_FILE)
    try:
        state = json.loads((root / STATE_FILE).read_text())
        if not isinstance(state, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):
        return WatcherInfo(False, None, [], log, "not running")
    pid, token, identity = state.get("pid"), state.get("token") or "", state.get("identity")
    ours = procs.is_ours(pid, identity, token)
    found = WatcherInfo(False, pid if isinstance(pid, int) else None, state.get("folders", []), log,
                        token=token, identity=identity, ours=ours)
    age = time.time() - float(state.get("updated", 0) or 0)
    if not ours:
        found.detail = f"not running (a stale state names pid {pid}, which is no filesim watcher)"
    elif age > STALE:
        found.detail = f"silent for {age:.0f}s (stuck?): see {log}"
    else:
        errors = state.get("errors") or {}
        found.running = True
        found.detail = "; ".join(f"{Path(f).name}: {e}" for f, e in errors.items())
    return found


def start_background(root: Path, folders: list[Path]) -> WatcherInfo:
    """Start the watcher for ``folders`` unless it already runs for exactly them.

    It is known by the token it is given (its pid may differ from the one started: a venv's
    python.exe on Windows is a launcher), and must write it within START_TIMEOUT.
    """
    current = info(root)
    wanted = sorted(str(f.resolve()) for f in folders)
    if current.running and sorted(current.folders) == wanted:
        return current
    stop_background(root)
    root.mkdir(parents=True, exist_ok=True)
    state = root / STATE_FILE
    state.with_name(state.name + ".stop").unlink(missing_ok=True)
    token = secrets.token_hex(8)
    options: dict[str, Any] = {}
    if os.name == "nt":  # no console to close with the PowerShell window, no admin rights needed
        options["creationflags"] = (subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
                                    | subprocess.CREATE_NO_WINDOW)
    else:
        options["start_new_session"] = True
    with open(root / LOG_FILE, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "filesim.watch", "--state", str(state), "--token", token, *wanted],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, close_fds=True, **options)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        current = info(root)
        if current.running and current.token == token:
            return current
        if process.poll() is not None:
            break
        time.sleep(0.1)
    from filesim.errors import UserError

    raise UserError(f"the host watcher did not start (exit {process.poll()}): see {root / LOG_FILE}")


def stop_background(root: Path, timeout: float = 10.0) -> str | None:
    """Stop the background watcher of ``root``: what was done, in words (None: nothing to do).

    A state file whose pid is no longer the watcher (identity or token differ) is only
    removed: nothing is signalled that filesim did not start.
    """
    current = info(root)
    state = root / STATE_FILE
    if current.pid is None and not state.exists():
        return None
    if not current.ours:
        state.unlink(missing_ok=True)
        return f"removed a stale host watcher state (pid {current.pid} is no filesim watcher)"
    stop_file = state.with_name(state.name + ".stop")
    stop_file.write_text("stop\n")
    deadline = time.monotonic() + timeout
    while state.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    stop_file.unlink(missing_ok=True)
    if state.exists():  # stuck: make sure it is gone, if it still is the watcher
        assert current.pid is not None and current.identity is not None
        killed = procs.kill(current.pid, current.identity, current.token)
        state.unlink(missing_ok=True)
        return f"stopped the host watcher of {root}" + (" (killed: it did not stop)" if killed else "")
    return f"stopped the host watcher of {root}"


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
