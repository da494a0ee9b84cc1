"""minikube's 9p mount of the data root, kept up by a background process of filesim's own.

``minikube start --mount`` starts the mount before ``invoke setup`` has created the data root
(it then exits with "Cannot find directory" while start reports success) and ties it to the
window that ran start (minikube#9906). Instead, setup creates the folders, starts minikube
without a mount, then starts this supervisor detached: it runs ``minikube mount`` on a fixed
port (one firewall rule), restarts it with back-off when it exits, and reports through its
state file (background.py) what runs, since when, and why the last one ended.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from filesim.background import Background, Beat

STATE_FILE = ".filesim-mount.json"
LOG_FILE = ".filesim-mount.log"
BEAT = 2.0
#: A mount that ran this long before it ended is restarted after a second; quicker ends back off.
STEADY = 60.0
MAX_BACKOFF = 60.0


def mount_command(profile: str, source: str, target: str, port: int) -> list[str]:
    """``minikube mount`` of ``source`` (this machine) at ``target`` (the node) on ``port``."""
    return ["minikube", "-p", profile, "mount", f"--port={port}", f"{source}:{target}"]


def background(root: Path) -> Background:
    """The mount supervisor of the data root ``root`` (its state and log live there)."""
    return Background("minikube mount", root / STATE_FILE, root / LOG_FILE, stale=BEAT * 10)


def supervise(command: list[str], beat: Beat, *, tick: float = 0.5) -> None:
    """Run ``command``, restart it when it ends (back-off 2 s … 60 s), until a stop request."""
    child: subprocess.Popen[bytes] | None = None
    started = next_start = 0.0
    backoff, restarts, last_end = 1.0, 0, ""
    next_beat = 0.0
    try:
        while True:
            now = time.monotonic()
            ended = ""
            if child is None and now >= next_start:
                try:
                    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
                    started = now
                except OSError as exc:  # minikube not on PATH (any more): tried again later
                    ended, started = f"cannot start: {exc}", now
            if child is not None and child.poll() is not None:
                ended, child = f"exit {child.returncode} after {now - started:.0f}s", None
            if ended:
                last_end = ended
                print(f"filesim mount: {' '.join(command)}: {ended}", file=sys.stderr, flush=True)
                backoff = 1.0 if now - started > STEADY else min(backoff * 2, MAX_BACKOFF)
                restarts, next_start = restarts + 1, now + backoff
            if now >= next_beat:
                next_beat = now + BEAT
                stop = beat.write(command=command, child=child.pid if child else None,
                                  restarts=restarts, last_end=last_end,
                                  next_try=(None if child else time.time() + next_start - now))
                if stop:
                    return
            time.sleep(tick)
    finally:
        if child is not None and child.poll() is None:
            child.terminate()  # minikube mount unmounts on SIGTERM/Ctrl-C
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        with contextlib.suppress(OSError):
            beat.done()


def main(argv: list[str] | None = None) -> int:
    """``python -m filesim.engines.mount9p --state FILE --token T -- COMMAND…``."""
    parser = argparse.ArgumentParser(prog="filesim mount", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="+", help="the mount command to keep running")
    parser.add_argument("--state", type=Path, required=True, help="state file (background.py)")
    parser.add_argument("--token", required=True, help="written into the state: how the tasks know it")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        supervise(args.command, Beat(args.state, args.token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
