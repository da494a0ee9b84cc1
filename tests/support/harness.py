"""Real processes for the sync tests: a 9p-like FUSE share and the agent as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filesim.sync.tree import TEMP_PREFIX

SUPPORT = Path(__file__).parent
MARKER = ".filesim-share"


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition.__doc__ or condition}")
        time.sleep(step)


class NinePShare:
    """A FUSE mount of ``backing`` at ``mount`` with 9p's quirks (tests/support/ninepfs.py).

    With ``ntfs``, NTFS's too; ``lock(path)`` then makes a file behave as open in Excel.
    """

    def __init__(self, base: Path, *, ntfs: bool = False):
        self.backing = base / "windows-backing"
        self.mount = base / "windows-mount"
        self.locks = base / "locks.txt"
        self.backing.mkdir()
        self.mount.mkdir()
        (self.backing / MARKER).write_text("filesim share marker\nid: test-share\n")
        extra = ["--ntfs", "--locks", str(self.locks)] if ntfs else []
        self.process = subprocess.Popen(
            [sys.executable, str(SUPPORT / "ninepfs.py"), str(self.backing), str(self.mount), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: os.path.ismount(self.mount), 10)

    def lock(self, *paths: str) -> None:
        """Lock files (or folders) on the NTFS share: writes, deletions and creations fail."""
        self.locks.write_text("".join(f"{p}\n" for p in paths))

    def stop(self) -> None:
        """Unmount and end the FUSE process."""
        subprocess.run(["fusermount3", "-u", "-z", str(self.mount)], check=False,
                       capture_output=True)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class AgentProcess:
    """``filesim-sync`` running as a real process against an NFS folder and the share."""

    def __init__(self, nfs: Path, windows: Path, state: Path, mode: str, log: Path, **options: Any):
        self.nfs, self.windows, self.state, self.mode, self.log = nfs, windows, state, mode, log
        self.options = {"interval": 0.3, "settle": 0.2, **options}
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, *, once: bool = False) -> list[str]:
        args = [sys.executable, "-m", "filesim.sync", "--nfs", str(self.nfs), "--windows",
                str(self.windows), "--state", str(self.state), "--mode", self.mode,
                "--log-format", "json"]
        for key, value in self.options.items():
            flag = f"--{key.replace('_', '-')}"
            args += [flag] if value is True else [flag, str(value)]
        return [*args, "--once"] if once else args

    def run_once(self, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(once=True), capture_output=True, text=True,
                              timeout=timeout)

    def start(self, *, wait: bool = True) -> AgentProcess:
        """Start the agent; by default wait until its first full pass is done."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        if wait:
            wait_until(self.has_passed, 15)
        return self

    def has_passed(self) -> bool:
        """The agent has written a status after a full pass (it is up)."""
        status = self.status()
        return bool(status and status.get("pid") == self.pid and status.get("last_full_pass"))

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def status(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.state / "status.json").read_text())
        except (OSError, ValueError):
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        if not self.process:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_events(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [json.loads(line) for line in lines if line.startswith("{")]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its content.

    Not the marker, the agent's folder, nor a copy in flight (its temp name is renamed in a
    moment; ``temp_files`` finds any left behind).
    """
    found = {}
    for path in sorted(root.rglob("*")):
        if path.name == MARKER or path.name.startswith(TEMP_PREFIX) \
                or ".filesim" in path.relative_to(root).parts:
            continue
        with contextlib.suppress(FileNotFoundError):  # renamed or deleted since listed
            if path.is_file():
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


def temp_files(*roots: Path) -> list[Path]:
    """The agent's temp files left below ``roots``."""
    return [p for root in roots for p in root.rglob(f"{TEMP_PREFIX}*")]


def reset(path: Path) -> None:
    """Empty a folder."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


class WatcherProcess:
    """The host watcher (``python -m filesim.watch``) as a real process over NAS folders."""

    def __init__(self, state: Path, *folders: Path):
        self.state = state
        self.folders = folders
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WatcherProcess:
        """Start it and wait until it has written its first beat."""
        self.state.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "filesim.watch", "--state", str(self.state), *map(str, self.folders)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.state.exists, 15)
        return self

    def kill(self) -> None:
        """kill -9: no last words in the journal."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None
