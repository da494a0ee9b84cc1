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

from filesim.sync.tree import TEMP_NAME as AGENT_TEMP
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
    """A FUSE mount with 9p's quirks (tests/support/ninepfs.py) of a data root holding one NAS folder.

    Tests write in ``backing`` (the NAS folder as Windows has it); the agent sees ``mount``
    (the same folder through the share). As in the pods, the whole data root is shared, so
    the agent's versions (kept beside the NAS folder, not in it) are on the share too.
    With ``ntfs``, NTFS's rules too; ``lock(path)`` then makes a file behave as open in Excel.
    ``drop_rate`` leaves that fraction of entries out of every listing, as minikube's 9p
    server has been seen to (lookups by name still find them). ``stats()`` tells how many
    operations reached the share and how many bytes were read per file; ``delay_ms`` makes
    each take that much longer (a round trip through a VM).
    """

    def __init__(self, base: Path, *, ntfs: bool = False, drop_rate: float = 0.0,
                 delay_ms: float = 0.0):
        self.backing_root = base / "windows-backing"
        self.mount_root = base / "windows-mount"
        self.backing = self.backing_root / "nas"
        self.mount = self.mount_root / "nas"
        self.locks = base / "locks.txt"
        self.stats_file = base / "share-stats.json"
        self.locked: tuple[str, ...] = ()
        self.denied: tuple[str, ...] = ()
        self.backing.mkdir(parents=True)
        self.mount_root.mkdir()
        (self.backing / MARKER).write_text("filesim share marker\nid: test-share\n")
        extra = ["--ntfs", "--locks", str(self.locks)] if ntfs else []
        extra += ["--stats", str(self.stats_file)]
        if drop_rate:
            extra += ["--drop-rate", str(drop_rate)]
        if delay_ms:
            extra += ["--delay-ms", str(delay_ms)]
        self.process = subprocess.Popen(
            [sys.executable, str(SUPPORT / "ninepfs.py"), str(self.backing_root), str(self.mount_root),
             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: os.path.ismount(self.mount_root), 10)

    def lock(self, *paths: str) -> None:
        """Lock files (or folders) of the NAS folder: writes, deletions and creations fail."""
        self.locked = paths
        self._write_locks()

    def deny(self, *folders: str) -> None:
        """Give folders of the NAS folder a deny ACL: listing them or looking inside fails."""
        self.denied = folders
        self._write_locks()

    def _write_locks(self) -> None:
        lines = [f"{self.backing.name}/{p}" for p in self.locked]
        lines += [f"!{self.backing.name}/{p}" for p in self.denied]
        self.locks.write_text("".join(f"{line}\n" for line in lines))

    def stats(self) -> dict[str, Any]:
        """Operations that reached the share so far, and bytes read per file (of the NAS folder)."""
        wait_until(self.stats_file.exists, 5)
        data = json.loads(self.stats_file.read_text())
        prefix = f"{self.backing.name}/"
        return {"ops": data["ops"], "read_bytes": {k.removeprefix(prefix): v
                                                   for k, v in data["read_bytes"].items()}}

    def stop(self) -> None:
        """Unmount and end the FUSE process."""
        subprocess.run(["fusermount3", "-u", "-z", str(self.mount_root)], check=False,
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
        """The agent's status.json; a running agent's first one is waited for (up to 10 s)."""
        running = self.process is not None and self.process.poll() is None
        deadline = time.monotonic() + (10 if running else 0)
        while True:
            try:
                return json.loads((self.state / "status.json").read_text())
            except (OSError, ValueError):
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.05)

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
    """CPU time (user + system) a live process has used (a dead one fails the test)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert fields[0] not in ("Z", "X"), f"process {pid} has ended: its CPU time proves nothing"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its content.

    Not the marker, the agent's folder, nor a copy in flight (its temp name is renamed in a
    moment; ``temp_files`` finds any left behind).
    """
    found = {}
    for path in sorted(root.rglob("*")):
        if path.name == MARKER or AGENT_TEMP.match(path.name) \
                or path.relative_to(root).parts[0] == ".filesim":
            continue
        with contextlib.suppress(FileNotFoundError):  # renamed or deleted since listed
            if path.is_file():
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


def temp_files(*roots: Path) -> list[Path]:
    """The agent's temp files left below ``roots``."""
    return [p for root in roots for p in root.rglob(f"{TEMP_PREFIX}*") if AGENT_TEMP.match(p.name)]


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
