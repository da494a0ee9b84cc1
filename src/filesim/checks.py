"""check-sync and probe-windows: prove a NAS syncs, end to end, through real NFS and files."""

from __future__ import annotations

import time
import uuid
from typing import Any

from filesim.engines import Engine, EngineError
from filesim.sync.status import HIDDEN, MARKER

CLEANUP_ROUNDS = 3
CLEANUP_TIMEOUT = 30.0
SYNCED = {
    "nfs_to_windows": ("bidirectional", "to-windows"),
    "windows_to_nfs": ("bidirectional", "to-nfs"),
}


def _share(engine: Engine, nas: str):
    folder = engine.windows_folder(nas)
    if not (folder / MARKER).is_file():
        raise EngineError(f"{folder} is not a NAS folder (no {MARKER}): run `invoke setup` first")
    return folder


def check_sync(engine: Engine, nas: str, timeout: float = 30.0) -> dict[str, Any]:
    """Write a file on each side, wait for it on the other, verify it, clean up.

    Returns ``{"nas", "ok", "directions": {name: {"status", "seconds"}}}``; a direction the
    NAS's mode does not sync is ``skipped``.
    """
    mode = engine.server(nas).sync.mode
    folder = _share(engine, nas)
    token = f"filesim-check-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    directions: dict[str, dict[str, Any]] = {}
    created: list[str] = []
    try:
        for direction, modes in SYNCED.items():
            if mode not in modes:
                directions[direction] = {"status": "skipped", "seconds": None}
                continue
            name = f"{token}-{direction}.txt"
            data = f"{direction} check of {nas} at {time.time()}\n".encode()
            created.append(name)
            started = time.monotonic()
            if direction == "nfs_to_windows":
                engine.nfs_write(nas, name, data)
                arrived = _wait(lambda n=name, d=data: _read(folder / n) == d, timeout)
            else:
                (folder / name).write_bytes(data)
                arrived = _wait(lambda n=name, d=data: engine.nfs_read(nas, n) == d, timeout)
            directions[direction] = {
                "status": "passed" if arrived else "failed",
                "seconds": round(time.monotonic() - started, 2) if arrived else None,
            }
            if not arrived:
                where = f"in {folder}" if direction == "nfs_to_windows" else "readable over NFS"
                directions[direction]["reason"] = f"not {where} within {timeout:g}s" + _why(engine, nas)
    finally:
        _clean_up(engine, nas, mode, created)
    ok = all(d["status"] != "failed" for d in directions.values())
    return {"nas": nas, "ok": ok, "directions": directions}


def _why(engine: Engine, nas: str) -> str:
    """What the NAS's status says is wrong, as a tail for a failure ("" if nothing)."""
    state = next((s for s in engine.status() if s.name == nas), None)
    said = state and (state.problem or state.degraded)
    return f" ({said})" if said else ""


def _running(engine: Engine, nas: str) -> None:
    """EngineError unless the NAS's containers run (else a probe would blame the share)."""
    state = next((s for s in engine.status() if s.name == nas), None)
    if state is not None and not state.running:
        raise EngineError(f"{nas} is not running ({state.problem}): `invoke deploy` starts it, "
                          f"`invoke status` shows why")


def _clean_up(engine: Engine, nas: str, mode: str, names: list[str]) -> None:
    """Remove the check files from both sides, whatever happened (a timeout included).

    A file may still be on its way when the check gives up: both sides are cleaned, the agent
    is asked for a barrier (so what it was copying has landed), and both are cleaned again.
    """
    folder = engine.windows_folder(nas)
    for _ in range(CLEANUP_ROUNDS):
        for name in names:
            (folder / name).unlink(missing_ok=True)
            if mode != "to-nfs" and engine.nfs_read(nas, name) is not None:  # to-nfs: read-only
                engine.nfs_remove(nas, name)
        engine.agent_request(nas, "barrier", CLEANUP_TIMEOUT)
        if all(not (folder / n).exists() and engine.nfs_read(nas, n) is None for n in names):
            return


def probe_windows(engine: Engine, nas: str) -> dict[str, Any]:
    """Show the three views of the NAS's Windows folder and prove they are one folder."""
    paths = engine.paths(nas)
    _running(engine, nas)
    name = f"{HIDDEN}/probe-{uuid.uuid4().hex[:8]}"  # the agent's own folder: never synced
    data = f"probe {name}"
    probe = _share(engine, nas) / name
    probe.parent.mkdir(exist_ok=True)
    probe.write_text(data)
    try:
        result = engine.exec(nas, "sync", ["cat", f"{paths.container}/{name}"])
    finally:
        probe.unlink(missing_ok=True)
    live = result.returncode == 0 and result.stdout == data
    if not live:
        raise EngineError(f"a probe file written in {paths.windows} is not visible at "
                          f"{paths.container} in {nas}'s sync container ({result.stdout.strip()}); "
                          f"the share is not mounted there: see docs/windows.md, troubleshooting")
    return {"nas": nas, "windows": paths.windows, "node": paths.node,
            "container": paths.container, "live": live}


def _read(path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())
