"""What the invoke tasks do, as plain functions (tasks.py only parses arguments)."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filesim import PROJECT_ROOT, values
from filesim.engines.base import NasStatus
from filesim.errors import BadInput
from filesim.model import Values, is_windows_path
from filesim.run import Runner
from filesim.sync.status import MARKER
from filesim.terminal import Reporter, table

DEFAULT_DATA_ROOT = PROJECT_ROOT / "simulator-data"


def seconds(value: Any, flag: str) -> float:
    """A positive, finite number of seconds from a command-line value; BadInput naming ``flag``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{flag} {value!r} is not a number of seconds; write e.g. {flag} 60") from None
    if not math.isfinite(number) or number <= 0:
        raise BadInput(f"{flag} {value!r}: give a positive number of seconds, e.g. {flag} 60")
    return number


def nas_list(text: str) -> list[str]:
    """``all`` → [] (every NAS); ``a,b`` → [a, b]; nothing named is bad input."""
    if text.strip() == "all":
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise BadInput(f"{text!r} names no NAS: give a NAS name, several comma-separated, or all")
    return names


def synth(files: Sequence[str], sets: Sequence[str], target: str, out: str) -> list[Any]:
    """Write the manifests for ``target`` into ``out``; return what to show (table, summary)."""
    from filesim.manifests import Target
    from filesim.manifests import synth as write

    if target not in {t.value for t in Target}:
        raise BadInput(f"--target {target!r}: choose one of {', '.join(t.value for t in Target)}")
    if Path(out).exists() and not Path(out).is_dir():
        raise BadInput(f"--out {out} is a file: name a folder (it is created if missing)")
    resolved = values.load(files, sets)
    kind = Target(target)
    written = write(resolved, kind, Path(out))
    return [summary(resolved, kind), f"wrote {len(written)} files to {out}/"]


def summary(resolved: Values, target: Any) -> Any:
    """NAS, role, mode, interval and endpoint of every enabled NAS, as a table."""
    rows = [("NAS", "ROLE", "MODE", "INTERVAL", "ENDPOINT")]
    for nas in resolved.servers:
        if target == "podman":
            endpoint = f"127.0.0.1:{nas.podman_port}/export"
        else:
            endpoint = f"{nas.service.cluster_ip}:{nas.nfs.port}/export"
        rows.append((nas.name, nas.role, nas.sync.mode, f"{nas.sync.interval}s", endpoint))
    return table(rows)


def engine(name: str | None, files: Sequence[str], sets: Sequence[str], data_root: str | None,
           context: str | None = None, *, dry_run: bool = False, echo: bool = False,
           need_data_root: bool = True):
    """The selected engine for these values; on podman the data root must exist unless told.

    The data root (``--data-root``, else FILESIM_DATA_ROOT) is one concept on every engine: it
    overrides ``windowsRoot``. podman takes ./simulator-data while windowsRoot is a Windows path
    on a machine that is not Windows.
    """
    from filesim.engines import EngineError, select

    given = data_root or os.environ.get("FILESIM_DATA_ROOT")
    if given and Path(given).exists() and not Path(given).is_dir():
        flag = "--data-root" if data_root else "FILESIM_DATA_ROOT"
        raise BadInput(f"{flag} {given} is a file: name the folder that holds (or will hold) "
                       "one folder per NAS")
    sets = [*sets, f"windowsRoot={Path(given).resolve()}"] if given else list(sets)
    resolved = values.load(files, sets)
    root = Path(resolved.windows_root)
    if is_windows_path(resolved.windows_root) and os.name != "nt":
        root = DEFAULT_DATA_ROOT
    selected = select(name, resolved, Runner(dry_run=dry_run, echo=echo), data_root=root,
                      context=context)
    if selected.name == "podman" and need_data_root and not root.is_dir():
        raise EngineError(f"the data root {root} does not exist: run `invoke setup --data-root "
                          f"{root}` first, or pass the folder that holds your NAS folders")
    return selected


#: Progress goes to stderr so --json output stays clean (a bar on a terminal).
progress = Reporter()


def locked(engine: Any, task: str) -> Any:
    """The deployment's lock for ``task`` (deploy, destroy, setup); none for a dry run."""
    import contextlib

    from filesim.locking import hold

    if engine.run.dry_run:
        return contextlib.nullcontext()
    return hold(engine.lock_path, f"{task} of {engine.values.namespace}", progress)


def status_report(states: list[NasStatus], as_json: bool, watcher: Any = None,
                  host: list[str] | None = None) -> list[Any]:
    """``invoke status`` output: a table and the lines about host processes, or JSON."""
    if as_json:
        return [json.dumps({"servers": [vars(s) for s in states],
                            "watcher": vars(watcher) if watcher else None,
                            "host": host or []}, indent=2, default=str)]
    rows = [("NAS", "READY", "MODE", "ENDPOINT", "USED", "LAST PASS", "CHANGES", "PENDING",
             "PROBLEMS", "CONFLICTS", "FAULT", "DETAIL")]
    for s in states:
        agent = s.agent
        last = agent.get("last_full_pass")
        age = f"{max(0.0, time.time() - last):.0f}s ago" if last else "-"
        export = agent.get("export") or {}
        used = (f"{export['used'] / 2**20:.0f}/{export['size'] / 2**20:.0f} MiB" if export else "-")
        if export.get("files_max"):
            used += f", {_count(export['files'])}/{_count(export['files_max'])} files"
        ready = ("degraded" if s.degraded else "yes") if s.ready else "no"
        problems = len(agent["problems"]) if "problems" in agent else "-"
        rows.append((s.name, ready, s.mode, s.endpoint, used, age, agent.get("windows_changes", "-"),
                     agent.get("pending", "-"), problems, agent.get("conflicts", "-"),
                     fault_cell(s), s.problem or s.degraded or ""))
    return [table(rows), *([watcher_line(watcher)] if watcher is not None else []), *(host or [])]


# -- faults (filesim/nas) ----------------------------------------------------------------------


def fault(engine: Any, names: list[str], kind: str, duration: Any, as_json: bool) -> list[Any]:
    """``invoke fault``: put a fault on (or clear) the named NAS servers; what to show.

    Every input is checked before any NAS is touched.
    """
    from filesim.nas import faults

    targets = [engine.server(n).name for n in names] or [n.name for n in engine.servers()]
    wanted = None
    seconds_for = None
    if kind != "clear":
        try:
            wanted = faults.parse(kind)
            seconds_for = faults.check_duration(seconds(duration, "--for")) if duration else None
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    elif duration:
        raise BadInput("--for goes with a fault, not with clear: `invoke fault NAS slow --for 30`")
    results = {}
    for nas in targets:
        answer = engine.set_fault(nas, wanted, seconds_for)
        results[nas] = answer
        if not as_json and not engine.run.dry_run:
            progress(f"{nas}: " + (f"fault {wanted.label} on" + (
                f" for {seconds_for:g}s" if seconds_for else " until `invoke fault "
                f"{nas} clear`") if wanted else "fault cleared"))
    return [json.dumps({"ok": True, "faults": results})] if as_json else []


def faults_report(states: list[NasStatus], as_json: bool) -> list[Any]:
    """``invoke faults``: every fault on, as a table or JSON."""
    on = [s for s in states if s.fault]
    if as_json:
        return [json.dumps([{"nas": s.name, "fault": s.fault, "fault_until": s.fault_until}
                            for s in on])]
    if not on:
        return ["no fault is on"]
    return [table([("NAS", "FAULT"), *((s.name, fault_cell(s)) for s in on)])]


# -- the host watcher (filesim/watch.py) ----------------------------------------------------


def share_folders(engine: Any) -> tuple[Path, list[Path]]:
    """(data root, every NAS folder) as this machine reaches them."""
    folders = [engine.windows_folder(nas.name) for nas in engine.servers()]
    return folders[0].parent, folders


def watcher_info(engine: Any) -> Any:
    """The host watcher's state, or None where it cannot run (a Windows root seen from Linux)."""
    from filesim.engines import EngineError
    from filesim.watch import info

    try:
        root, _ = share_folders(engine)
    except EngineError:
        return None
    return info(root)


def fault_cell(state: NasStatus) -> str:
    """``slow=200 (41s left)``, or ``-``."""
    if not state.fault:
        return "-"
    left = f" ({max(0.0, state.fault_until - time.time()):.0f}s left)" if state.fault_until else ""
    return state.fault + left


def _count(n: int) -> str:
    """12,345 → 12.3k; 256,000 → 256k: short enough for a table."""
    return f"{n / 1000:.3g}k" if n >= 10_000 else str(n)


def watcher_line(watcher: Any) -> str:
    """One line about the host watcher for ``invoke status`` and ``invoke deploy``."""
    if watcher.running:
        extra = f"; {watcher.detail}" if watcher.detail else ""
        return f"host watcher: running (pid {watcher.pid}, log {watcher.log}){extra}"
    return (f"host watcher: {watcher.detail}; Windows changes are found by polling until "
            "`invoke watch` (foreground) or `invoke deploy` (background) starts it")


def start_watcher(engine: Any) -> str:
    """Start the host watcher in the background (``invoke deploy``); the line to print."""
    from filesim.engines import EngineError
    from filesim.watch import start_background

    try:
        root, folders = share_folders(engine)
    except EngineError as exc:
        return f"host watcher: not started ({exc})"
    return watcher_line(start_background(root, folders))


def stop_watcher(engine: Any) -> None:
    """Stop the host watcher of this deployment's folders, if it runs."""
    from filesim.engines import EngineError
    from filesim.watch import stop_background

    try:
        root, _ = share_folders(engine)
    except EngineError:
        return
    done = stop_background(root)
    if done:
        progress(done)


def watch(engine: Any) -> None:
    """``invoke watch``: the host watcher in the foreground until Ctrl-C (replaces a background one)."""
    from filesim.watch import Watcher, stop_background

    root, folders = share_folders(engine)
    missing = [str(f) for f in folders if not (f / MARKER).is_file()]
    if missing:
        from filesim.engines import EngineError

        raise EngineError(f"not set up (no {MARKER}): {', '.join(missing)}; run `invoke setup` first")
    if stop_background(root):
        progress("the background watcher is stopped: this one takes over")
    watcher = Watcher(folders)
    progress(f"watching {len(folders)} NAS folder(s) under {root}; Ctrl-C stops")
    try:
        watcher.run_until_interrupted()
    finally:
        progress("host watcher stopped: Windows changes are found by polling")


def wait_synced(engine: Any, names: Sequence[str], timeout: float) -> dict[str, Any]:
    """Wait until, on every named NAS (default all), what changed before the call is on both sides.

    Each agent is asked for a barrier (a full pass that starts after the request and leaves
    nothing pending), all at once. A NAS whose agent does not answer reports what differs,
    found by a one-shot look at its export and folder.
    """
    from concurrent.futures import ThreadPoolExecutor

    targets = list(names) or [nas.name for nas in engine.servers()]
    for name in targets:
        engine.server(name)  # an unknown name is bad input, before any waiting
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        answers = list(pool.map(lambda n: engine.agent_request(n, "barrier", timeout), targets))
    servers = {}
    for name, answer in zip(targets, answers, strict=True):
        if answer is None:
            answer = {"ok": False, "error": "its sync agent did not answer (see `invoke status`)",
                      "pending": engine.unsynced(name)}
        servers[name] = {"ok": bool(answer.get("ok")), "pending": answer.get("pending", []),
                         "error": answer.get("error")}
    return {"ok": all(s["ok"] for s in servers.values()), "servers": servers,
            "seconds": round(time.monotonic() - started, 2)}


def wait_report(result: dict[str, Any]) -> str:
    """Human-readable wait-synced result: one line per NAS."""
    lines = []
    for name, server in result["servers"].items():
        if server["ok"]:
            lines.append(f"{name}: in step")
            continue
        pending = server["pending"]
        shown = ", ".join(pending[:5]) + (f" and {len(pending) - 5} more" if len(pending) > 5 else "")
        why = server["error"] or "not in step"
        lines.append(f"{name}: {why}" + (f"; pending: {shown}" if pending else ""))
    return "\n".join(lines)


def check_report(result: dict[str, Any]) -> str:
    """Human-readable check-sync result."""
    lines = [f"{result['nas']}: {'ok' if result['ok'] else 'FAILED'}"]
    for direction, outcome in result["directions"].items():
        seconds = f" in {outcome['seconds']}s" if outcome["seconds"] is not None else ""
        reason = f": {outcome['reason']}" if outcome.get("reason") else ""
        lines.append(f"  {direction.replace('_', ' ')}: {outcome['status']}{seconds}{reason}")
    return "\n".join(lines)


SIDES = ("windows", "nfs")


def _side(side: str) -> str:
    if side not in SIDES:
        raise BadInput(f"--side {side!r}: choose windows (what the agent deleted or replaced in "
                       "your folder) or nfs (what it deleted or replaced in the export)")
    return side


def versions_report(engine: Any, nas: str, path: str | None, as_json: bool,
                    side: str = "windows") -> Any:
    """``invoke versions``: what the agent kept of one side of a NAS before deleting or replacing it."""
    from filesim.sync.versions import Versions

    engine.server(nas)
    if _side(side) == "windows":
        kept = Versions.of_share(engine.windows_folder(nas))
        found = [vars(v) for v in (kept.within(path) if path else kept.all())]
        where = str(kept.folder)
    else:
        found = engine.nfs_versions(nas, path or "")
        where = f"{nas}'s state folder"
    if as_json:
        return [json.dumps(found, indent=2)]
    if not found:
        return [f"{nas}: no versions kept on the {side} side" + (f" of {path}" if path else "")]
    rows = [("PATH", "KEPT AT (UTC)", "SIZE", "VERSION")]
    rows += [(v["path"], time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v["at"])), v["size"],
              v["version"]) for v in found]
    return [table(rows), f"kept in {where}; `invoke restore {nas} PATH --side {side}` puts one back"]


def restore(engine: Any, nas: str, path: str, at: str | None, timeout: float,
            side: str = "windows") -> dict[str, Any]:
    """``invoke restore``: put kept versions of a file, or of every file below a folder, back.

    Windows side: into the NAS folder, then wait until NFS has them too. NFS side: the agent
    puts them back into the export (then they reach the folder as any NFS change).
    """
    from datetime import UTC, datetime

    from filesim.sync.versions import Versions

    engine.server(nas)
    _side(side)
    when = None
    if at:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            raise BadInput(f"--at {at!r} is not a time; write e.g. 2026-11-30T07:15:00 (UTC)",
                            ) from None
        when = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    missing = BadInput(f"{nas} keeps no version of {path!r} on the {side} side"
                       + (f" from before {at}" if at else "")
                       + f"; `invoke versions {nas} --side {side}` lists what is kept")
    if side == "nfs":
        if not engine.nfs_versions(nas, path):
            raise missing
        answer = engine.agent_request(nas, "restore", timeout, path=path, at=when) or {
            "ok": False, "error": "its sync agent did not answer (see `invoke status`)"}
        restored = [r["path"] for r in answer.get("restored", [])]
        synced = bool(answer.get("ok")) and bool(
            (engine.agent_request(nas, "barrier", timeout) or {}).get("ok"))
        return {"nas": nas, "side": side, "restored": restored, "ok": synced,
                "synced": synced, "error": answer.get("error"),
                "failed": answer.get("failed", [])}
    kept = Versions.of_share(engine.windows_folder(nas))
    file_versions = [v for v in kept.of(path) if when is None or v.at <= when]
    chosen = file_versions[-1:] or kept.under(path, when)
    if not chosen:
        raise missing
    for version in chosen:
        kept.restore(version.path, version.at)
    answer = engine.agent_request(nas, "barrier", timeout) or {"ok": False}
    return {"nas": nas, "side": side, "restored": [v.path for v in chosen],
            "ok": bool(answer.get("ok")), "synced": bool(answer.get("ok")), "error": None,
            "failed": []}


def restore_report(result: dict[str, Any]) -> str:
    """One line for ``invoke restore``."""
    restored = result["restored"]
    shown = ", ".join(restored[:3]) + (f" and {len(restored) - 3} more" if len(restored) > 3 else "")
    where = "the folder" if result["side"] == "windows" else "the export"
    other = "NFS" if result["side"] == "windows" else "the folder"
    if result.get("error"):
        return f"{result['nas']}: not restored: {result['error']}"
    failed = "".join(f"; {f['path']} failed: {f['error']}" for f in result["failed"])
    state = f"on {other} too" if result["synced"] else "not yet everywhere: see `invoke status`"
    return f"{result['nas']}: restored {shown} into {where}; {state}{failed}"
