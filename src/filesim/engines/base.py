"""What every engine offers: deploy, wait, status, logs, exec, paths, NFS access, destroy."""

from __future__ import annotations

import abc
import json
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from filesim.errors import BadInput, UserError
from filesim.manifests.props import STATE_DIR
from filesim.model import Nas, Values
from filesim.nas.faults import Fault
from filesim.run import Runner
from filesim.sync.status import MARKER, marker_text

Progress = Callable[[str], None]
SHARE_README = """This folder is the Windows side of the simulated NAS {name} ({role}, sync {mode}).
Files you put here appear in its NFS export; {back}
Do not delete .filesim-share: the sync agent refuses to run without it (it proves the share
is mounted).
"""
SHARE_BACK = {
    "bidirectional": "files written over NFS appear here.",
    "to-windows": "files written over NFS appear here (yours are never replaced).",
    "to-nfs": "the export mirrors this folder and is read-only for NFS clients.",
}


def prepare_share(folder: Path, nas: Nas, dry_run: bool, progress: Progress) -> bool:
    """Create a NAS's Windows-side folder with the share marker and a README, if missing.

    Returns whether the marker had to be created.
    """
    if dry_run:
        print(f"# create {folder} with {MARKER} and README.txt, if missing")
        return False
    folder.mkdir(parents=True, exist_ok=True)
    created = not (folder / MARKER).exists()
    if created:
        (folder / MARKER).write_text(marker_text())
        progress(f"created {folder}")
    readme = folder / "README.txt"
    if not readme.exists():
        mode = nas.sync.mode
        readme.write_text(SHARE_README.format(name=nas.name, role=nas.role, mode=mode,
                                              back=SHARE_BACK[mode]))
    return created


class EngineError(UserError):
    """A user-facing failure: one line saying what is wrong and how to fix it."""


def request_argv(kind: str, timeout: float, **details: Any) -> list[str]:
    """The agent's command line that asks the running agent for ``kind`` (flags from ``details``)."""
    argv = ["filesim-sync", "--state", STATE_DIR, "--request", kind, "--timeout", str(timeout)]
    for key, value in details.items():
        if value is not None:
            argv += [f"--{key}", str(value)]
    return argv


@dataclass(frozen=True)
class SharePaths:
    """Where one NAS's Windows folder is seen: on Windows, on the node, in the container."""

    windows: str
    node: str
    container: str


@dataclass
class Retired:
    """What retiring one NAS did: its export removed (flushed), or kept and why."""

    nas: str
    removed: bool
    why: str = ""


@dataclass
class NasStatus:
    """What ``invoke status`` shows for one NAS."""

    name: str
    role: str
    mode: str
    endpoint: str
    running: bool = False
    ready: bool = False
    problem: str | None = None
    #: The problem will not go away by waiting (image pull, crash loop, eviction...).
    stuck: bool = False
    #: Serving and syncing, but something needs attention (the first problem, and how many).
    degraded: str | None = None
    agent: dict[str, Any] = field(default_factory=dict)
    #: While its seed runs: its progress (seed.json), which keeps wait_ready waiting.
    seed: dict[str, Any] | None = None
    #: The fault `invoke fault` put on it (``slow=200``), and when it ends by itself (epoch).
    fault: str | None = None
    fault_until: float | None = None

    def read_fault(self) -> None:
        """Fill ``fault`` from what the agent reports its NFS server's supervisor applied.

        A server that does not answer because of its fault is not ready, and says why.
        """
        applied = self.agent.get("fault") if isinstance(self.agent, dict) else None
        if isinstance(applied, dict) and applied.get("kind"):
            found = Fault(str(applied["kind"]), applied.get("value"), applied.get("until"))
            if not found.active(time.time()):
                return
            self.fault, self.fault_until = found.label, found.until
            if not self.ready and self.running:
                self.problem = (f"fault {found.label} is on (`invoke fault {self.name} clear` "
                                f"ends it)")
                self.stuck = False


def seed_line(nas: str, seed: dict[str, Any], *, short: bool = False) -> str:
    """A seed's progress in one line: ``12345/100000 files; nas-backup seeding, 12 MiB, ...``.

    The counter form makes a progress bar on a terminal (terminal.Reporter).
    """
    done, total = seed.get("files_done") or 0, seed.get("files_total")
    mib = (seed.get("bytes_done") or 0) / 2**20
    elapsed = max(time.time() - (seed.get("started_at") or time.time()), 1e-3)
    rate = done / elapsed
    eta = f", ETA {(total - done) / rate:.0f}s" if total and rate and total > done else ""
    if short:
        return f"{seed.get('phase', 'starting')}, {done} of {total or '?'} files copied"
    counter = f"{done}/{total} files" if total else f"{done} files"
    return f"{counter}; {nas} seeding: {mib:.0f} MiB, {rate:.0f} files/s{eta}"


def stalled_why(status: dict[str, Any] | None) -> str:
    """What a stalled agent's status names as its first problem ("" if none)."""
    problems = (status or {}).get("problems") or []
    blocking = [p for p in problems if p.get("blocks", True)]
    return f"; last problem: {blocking[0]['path']}: {blocking[0]['reason']}" if blocking else ""


def _never_synced(status: dict[str, Any]) -> str:
    """What an export held that never reaches Windows (symlinks, FIFOs, sockets...), named."""
    found = [p["path"] for p in status.get("problems", [])
             if "symlink" in p.get("reason", "") or "special file" in p.get("reason", "")]
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    return f"{len(found)} symlink(s) or special file(s) ({shown})" if found else ""


class Engine(abc.ABC):
    """Runs the NAS servers of one values set somewhere."""

    name: ClassVar[str]

    def __init__(self, values: Values, runner: Runner):
        self.values = values
        self.run = runner

    @property
    def image_ref(self) -> str:
        """``repository:tag`` of the NAS image."""
        return self.values.image.reference

    @property
    def lock_path(self) -> Path:
        """The lock deploy, destroy and setup hold for this deployment (locking.py)."""
        return Path.home() / ".filesim" / "locks" / f"{self.name}-{self.values.namespace}.lock"

    def servers(self) -> tuple[Nas, ...]:
        """The enabled NAS servers."""
        return self.values.servers

    def server(self, name: str) -> Nas:
        """One enabled NAS by name; EngineError naming the choices otherwise."""
        nas = self.values.server(name)
        if nas is None:
            names = ", ".join(n.name for n in self.servers())
            raise BadInput(f"no enabled NAS named {name!r}; choose one of: {names}")
        return nas

    @abc.abstractmethod
    def setup(self, progress: Progress) -> None:
        """Prepare the machine: tools, image, one Windows-side folder per NAS with its marker."""

    @abc.abstractmethod
    def apply(self, progress: Progress) -> None:
        """Create or replace every NAS of the values; remove NAS servers no longer in them."""

    #: Seconds between status checks while waiting for ready.
    poll_seconds: ClassVar[float] = 0.5

    def wait_ready(self, timeout: float, progress: Progress) -> None:
        """Wait until every NAS serves NFS and its agent is healthy; EngineError on timeout.

        Progress is reported whenever it changes; a problem waiting cannot fix (``stuck``)
        ends the wait at once. While a NAS's seed makes progress the wait goes on past
        ``timeout``; a seed that made none for its ``seed.stallSeconds`` ends it.
        """
        deadline = time.monotonic() + timeout
        last = ""
        seeds: dict[str, tuple[Any, float]] = {}  # NAS → (its seed's progress, since when)
        while True:
            states = self.status()
            waiting = [s for s in states if not s.ready]
            for state in waiting:
                if state.seed is not None:
                    moved = (state.seed.get("files_done"), state.seed.get("bytes_done"))
                    if seeds.get(state.name, (None, 0.0))[0] != moved:
                        seeds[state.name] = (moved, time.monotonic())
                    stall = self.server(state.name).seed_stall
                    since = seeds[state.name][1]
                    if time.monotonic() - since > stall:
                        raise EngineError(f"{state.name}: its seed made no progress for {stall:.0f}s "
                                          f"({seed_line(state.name, state.seed, short=True)}"
                                          f"{stalled_why(state.seed)}); see `invoke logs "
                                          f"{state.name} --container init`")
                    deadline = max(deadline, since + stall)  # waiting while it progresses
            line = f"{len(states) - len(waiting)}/{len(states)} ready" + "".join(
                f"; {s.name}: {s.problem}" for s in waiting[:3])
            if line != last:
                progress(line)
                last = line
            if not waiting:
                return
            stuck = next((s for s in waiting if s.stuck), None)
            if stuck is not None:
                raise EngineError(str(stuck.problem))
            if time.monotonic() > deadline:
                first = waiting[0]
                raise EngineError(f"{first.name} not ready after {timeout:.0f}s ({first.problem}); "
                                  f"see `invoke logs {first.name}` and `invoke logs {first.name} "
                                  f"--container nfs`")
            time.sleep(self.poll_seconds)

    @abc.abstractmethod
    def status(self) -> list[NasStatus]:
        """The state of every enabled NAS."""

    def host_lines(self) -> list[str]:
        """Lines about what the engine keeps running on this machine (minikube: its mount)."""
        return []

    @abc.abstractmethod
    def logs(self, nas: str, container: str, follow: bool) -> None:
        """Print (or follow) a container's log."""

    @abc.abstractmethod
    def exec(self, nas: str, container: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a command in a container of the NAS pod."""

    @abc.abstractmethod
    def paths(self, nas: str) -> SharePaths:
        """The NAS's Windows folder on Windows, on the node and in the sync container."""

    @abc.abstractmethod
    def windows_folder(self, nas: str) -> Path:
        """The NAS's Windows-side folder as this machine reaches it."""

    @abc.abstractmethod
    def nfs_write(self, nas: str, name: str, data: bytes) -> None:
        """Write a file into the export through a real NFS client."""

    @abc.abstractmethod
    def nfs_read(self, nas: str, name: str) -> bytes | None:
        """Read a file of the export through a real NFS client; None if it does not exist."""

    @abc.abstractmethod
    def nfs_remove(self, nas: str, name: str) -> None:
        """Delete a file of the export through a real NFS client."""

    def set_fault(self, nas: str, fault: Fault | None, duration: float | None = None,
                  timeout: float = 120.0) -> dict[str, Any]:
        """Put ``fault`` on the NAS's NFS server (None: clear it); what its supervisor applied.

        The NAS holds the fault and its deadline (nas/nfsd.py): it ends by itself after
        ``duration`` seconds even if nothing here runs any more.
        """
        argv = ["filesim-nfs", "--state", STATE_DIR, "fault", "clear" if fault is None else "set"]
        if fault is not None:
            argv += [fault.kind, *(["--value", f"{fault.value:g}"] if fault.value is not None else []),
                     *(["--for", f"{duration:g}"] if duration else [])]
        argv += ["--timeout", f"{timeout:g}"]
        if self.run.dry_run:
            print(f"# in {nas}'s nfs container: {shlex.join(argv)}")
            return {"ok": True, "dry_run": True}
        result = self.exec(nas, "nfs", argv)
        try:
            answer = json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            answer = {"ok": False, "error": (result.stderr or result.stdout).strip()[-300:]
                      or f"exit {result.returncode}"}
        if not answer.get("ok"):
            what = fault.label if fault else "clear"
            raise EngineError(f"{nas}: fault {what} was not applied ({answer.get('error')}); see "
                              f"`invoke logs {nas} --container nfs`")
        return answer

    def clear_faults(self, states: list[NasStatus], progress: Progress) -> None:
        """End every fault on (``deploy`` and ``destroy`` start from healthy servers)."""
        for state in states:
            if state.fault and state.running:
                self.set_fault(state.name, None)
                progress(f"{state.name}: fault {state.fault} cleared")

    def destroy(self, progress: Progress, *, force: bool = False) -> None:
        """Stop and remove every NAS of this deployment; the Windows folders stay.

        An export goes only once everything in it reached the Windows side (see ``retire``);
        EngineError names the exports kept and how to recover (``force`` removes them anyway).
        """
        present = [nas for nas in self.deployed_names() if self.exists(nas)]
        if not present:
            progress(f"nothing of deployment {self.values.namespace!r} is here to remove")
        retired = [self.retire(nas, progress, force=force) for nas in present]
        kept = [r for r in retired if not r.removed]
        if kept:
            raise EngineError("; ".join(f"{r.nas}: export kept, {r.why}" for r in kept) +
                              " — fix what is named (`invoke status --json` lists the problems), "
                              "then run `invoke destroy` again, or `invoke destroy --force` to "
                              "discard what did not reach the Windows side")

    def retire(self, nas: str, progress: Progress, *, force: bool = False) -> Retired:
        """Stop one NAS; remove its export only if nothing in it is missing on the Windows side.

        NFS stops first (no client writes after the proof), the running agent flushes on
        request and again when stopped; where it is dead or cannot finish, a one-shot flush
        of the same agent code runs on the export. If even that leaves something behind, the
        export and state stay where the next deploy finds them.
        """
        if not self.exists(nas):
            return Retired(nas, True)  # nothing of it left: nothing to flush or say
        self.stop_nfs(nas)
        answer = self.agent_request(nas, "flush", timeout=60) or {}
        self.remove_pod(nas, progress)
        final = self.final_status(nas) or {}
        clean = answer.get("ok") is True and final.get("stopped") and not final.get("pending") \
            and not final.get("unsynced")
        why = ""
        if not clean:
            progress(f"{nas}: the agent did not confirm a clean flush; running a one-shot flush")
            try:
                clean, why = self.flush_once(nas)
            except UserError as exc:  # a broken export (an image that will not mount)
                clean, why = False, str(exc)
        if clean or force:
            never = _never_synced(self.final_status(nas) or final)
            self.remove_export(nas)
            progress(f"removed {nas}" + ("" if clean else f" (forced: {why})") +
                     (f"; gone with its export, never synced to Windows: {never}" if never else ""))
            return Retired(nas, True)
        return Retired(nas, False, why or "its changes could not all reach the Windows side")

    def exists(self, nas: str) -> bool:
        """Whether anything of the NAS is deployed here (a pod, an export); engines that can tell."""
        return True

    def deployed_names(self) -> list[str]:
        """Every NAS this deployment has pods or exports of (values order, then the rest)."""
        return [nas.name for nas in self.servers()]

    # Primitives of retire(), per engine.

    def stop_nfs(self, nas: str) -> None:  # noqa: B027 - engines that can stop NFS alone do
        """Stop the NAS's NFS server, if the engine can stop it alone (no client writes)."""

    @abc.abstractmethod
    def agent_request(self, nas: str, kind: str, timeout: float, **details: Any
                      ) -> dict[str, Any] | None:
        """Ask the NAS's running agent for a flush, barrier, release or restore; None if it cannot."""

    def nfs_versions(self, nas: str, path: str = "") -> list[dict[str, Any]]:
        """What the NAS's agent kept of the NFS side (at or below ``path``), oldest first."""
        result = self.exec(nas, "sync", ["filesim-sync", "--state", STATE_DIR, "--versions",
                                         "--path", path or "."])
        try:
            return json.loads(result.stdout.strip().splitlines()[-1])["versions"]
        except (ValueError, IndexError, KeyError):
            raise EngineError(f"{nas}: its sync container did not list the NFS side's versions "
                              f"({(result.stdout + result.stderr).strip()[-200:] or 'no output'}); "
                              f"is it running? `invoke status`") from None

    @abc.abstractmethod
    def remove_pod(self, nas: str, progress: Progress) -> None:
        """Stop the NAS's pod gracefully (the agent flushes) and remove it; export stays."""

    @abc.abstractmethod
    def final_status(self, nas: str) -> dict[str, Any] | None:
        """The status the stopped agent left in its state folder."""

    @abc.abstractmethod
    def one_shot(self, nas: str, *flags: str) -> tuple[int, str]:
        """Run the NAS's agent once with ``flags`` on its kept export and state; (code, output).

        Only while the NAS's own agent is stopped (a flush after it, a look at what it missed).
        """

    def flush_once(self, nas: str) -> tuple[bool, str]:
        """Run the agent once with --flush on the export; (clean, why not)."""
        code, output = self.one_shot(nas, "--flush")
        if code == 0:
            return True, ""
        status = self.final_status(nas) or {}
        problems = [f"{p['path']}: {p['reason']}" for p in status.get("problems", [])
                    if p.get("blocks", True)][:3]
        if problems:
            return False, "; ".join(problems)
        tail = output.strip().splitlines()
        return False, tail[-1] if tail else "the one-shot flush failed"

    def unsynced(self, nas: str) -> list[str]:
        """Paths differing from the agreed state on either side, found while no agent runs."""
        code, output = self.one_shot(nas, "--unsynced")
        try:
            return json.loads(output.strip().splitlines()[-1])["unsynced"]
        except (ValueError, IndexError, KeyError, TypeError):
            return [f"(could not look: exit {code})"]

    @abc.abstractmethod
    def remove_export(self, nas: str) -> None:
        """Remove the NAS's export filesystem, state and volumes."""
