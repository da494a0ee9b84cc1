"""Background processes of filesim's own (the host watcher, minikube's mount), found by state.

Each is started detached with a fresh token on its command line and rewrites a JSON state file
every beat: its pid, its identity (procs.identity), the token, ``updated`` and whatever it
reports. The tasks trust a state only while its pid is still that process (``procs.is_ours``);
they stop one through a ``<state>.stop`` file (what also works on Windows, where a detached
process has no console to signal) and kill it only if it does not stop and is still ours.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filesim import procs
from filesim.errors import UserError
from filesim.sync.status import write_json_atomically


@dataclass
class Seen:
    """What a state file says of a background process, checked against the process itself.

    ``ours``: the pid is still the process the state describes (identity and token match);
    ``running``: ours and not silent for longer than its ``stale`` seconds.
    """

    running: bool
    pid: int | None
    detail: str
    state: dict[str, Any] = field(default_factory=dict)
    token: str = ""
    identity: str | None = None
    ours: bool = False


@dataclass(frozen=True)
class Background:
    """One kind of background process: what it is called, its state and log, when it is stale."""

    what: str
    state_file: Path
    log_file: Path
    stale: float
    start_timeout: float = 15.0

    @property
    def stop_file(self) -> Path:
        """The file whose presence asks the process to stop."""
        return self.state_file.with_name(self.state_file.name + ".stop")

    def seen(self) -> Seen:
        """The process as its state file names it."""
        try:
            state = _read(self.state_file)
        except (OSError, ValueError):
            return Seen(False, None, "not running")
        pid, token, identity = state.get("pid"), str(state.get("token") or ""), state.get("identity")
        ours = procs.is_ours(pid, identity, token)
        found = Seen(False, pid if isinstance(pid, int) else None, "", state, token,
                     identity if isinstance(identity, str) else None, ours)
        age = time.time() - float(state.get("updated", 0) or 0)
        if not ours:
            found.detail = f"not running (a stale state names pid {pid}, which is not filesim's {self.what})"
        elif age > self.stale:
            found.detail = f"silent for {age:.0f}s (stuck?): see {self.log_file}"
        else:
            found.running = True
        return found

    def start(self, module: str, args: list[str]) -> Seen:
        """Start ``python -m module --state FILE --token T args…`` detached; Seen once it wrote its state.

        It is known by its token, not by the pid started: on Windows a venv's python.exe is a
        launcher whose child is the process that runs.
        """
        self.stop()
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.stop_file.unlink(missing_ok=True)
        token = secrets.token_hex(8)
        options: dict[str, Any] = {}
        if os.name == "nt":  # no console to close with the PowerShell window, no admin rights needed
            options["creationflags"] = (subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
                                        | subprocess.CREATE_NO_WINDOW)
        else:
            options["start_new_session"] = True
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module, "--state", str(self.state_file), "--token", token,
                 *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, close_fds=True,
                **options)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            current = self.seen()
            if current.running and current.token == token:
                return current
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise UserError(f"the {self.what} did not start (exit {process.poll()}): see {self.log_file}")

    def stop(self, timeout: float = 10.0) -> str | None:
        """Stop it: what was done, in words (None: nothing to do).

        A state whose pid is no longer the process (identity or token differ) is only removed:
        nothing is signalled that filesim did not start.
        """
        current = self.seen()
        if current.pid is None and not self.state_file.exists():
            return None
        if not current.ours:
            self.state_file.unlink(missing_ok=True)
            return f"removed a stale {self.what} state (pid {current.pid} is not filesim's {self.what})"
        self.stop_file.write_text("stop\n")
        deadline = time.monotonic() + timeout
        while self.state_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.stop_file.unlink(missing_ok=True)
        if self.state_file.exists():  # stuck: make sure it is gone, if it still is ours
            assert current.pid is not None and current.identity is not None
            killed = procs.kill(current.pid, current.identity, current.token)
            self.state_file.unlink(missing_ok=True)
            return f"stopped the {self.what}" + (" (killed: it did not stop)" if killed else "")
        return f"stopped the {self.what}"


class Beat:
    """The running process's side: rewrites its state every beat, sees a stop request."""

    def __init__(self, state_file: Path | None, token: str):
        self.state_file = state_file
        self.token = token
        self.identity = procs.identity(os.getpid())
        self.started = time.time()

    def write(self, **report: Any) -> bool:
        """Rewrite the state with ``report``; whether a stop was requested.

        A state naming another process started later means it took over (this one's state
        was deleted meanwhile, with its folder): that is a stop request too.
        """
        if self.state_file is None:
            return False
        try:
            other = _read(self.state_file)
            if other.get("token") != self.token and float(other.get("started") or 0) > self.started:
                return True
        except (OSError, ValueError, TypeError):
            pass
        write_json_atomically(self.state_file, {
            "pid": os.getpid(), "identity": self.identity, "token": self.token,
            "started": self.started, "updated": time.time(), **report})
        return self.state_file.with_name(self.state_file.name + ".stop").exists()

    def done(self) -> None:
        """The process ends: its state goes (the tasks then know it is not running)."""
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any]:
    import json

    state = json.loads(path.read_text())
    if not isinstance(state, dict):
        raise ValueError("not an object")
    return state
