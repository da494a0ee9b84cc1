"""The agent's contract with the control plane: status file, health, requests, share marker.

Engines import this module (never the agent loop). Everything lives in the agent's state
folder (``--state``):

``status.json`` (rewritten atomically at least every poll interval)
    ``pid``, ``mode``, ``started_at``, ``updated_at``, ``interval``, ``stopped``;
    ``seq`` (full passes completed), ``last_full_pass`` (time it ended), ``last_full_pass_seconds``;
    ``pending`` (paths changed on one side, not yet on the other) and ``pending_paths`` (first 50);
    ``problems`` (each ``side``, ``path``, ``reason``, ``since``, ``last``, ``next_retry``,
    ``attempts``) and ``errors`` (how many there are now); ``held_deletions``; ``conflicts``
    (since start) and ``recent_conflicts``; ``files_tracked``; ``share_mounted``; ``share_id``;
    ``export`` (``used``/``size`` bytes); ``windows_changes`` (``journal`` or ``polling``).

``seed.json`` (the seed, ``--once``: rewritten every second while it copies)
    ``phase`` (counting, copying, done), ``files_total``, ``files_done``, ``bytes_done``,
    ``started_at``, ``updated_at``, ``errors`` and the first ``problems``, ``peak_rss_mib``.

``requests/<id>.json`` → ``requests/<id>.result.json``
    ``flush``: copy everything pending now, settle ignored (before an export goes away);
    ``barrier``: wait for a full pass that started after the request and leaves nothing pending
    (``invoke wait-synced``); ``release``: let held deletions through once; ``restore``: put
    the NFS side's kept versions of ``path`` (a file, or every file below a folder) back in
    the export, as kept at or before ``at``. The result says ``ok`` and lists what is still
    ``pending`` and the ``problems``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
#: The seed's progress and outcome (the seed writes it; the sidecar leaves it alone).
SEED_FILE = "seed.json"
#: An idle agent rewrites its status at least this often (seconds); older means it is stuck.
STATUS_EVERY = 5.0
REQUESTS = "requests"
REQUEST_KINDS = ("flush", "barrier", "release", "restore")
#: At the root of every NAS's Windows folder: proves the share is mounted; holds its identity.
MARKER = ".filesim-share"
#: The agent's own folder at the root of the Windows share (versions, change journal); never synced.
HIDDEN = ".filesim"
#: Container names of a NAS pod, by what `invoke logs --container` calls them.
CONTAINERS = {"sync": "sync", "nfs": "nfs", "init": "seed"}


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temp file beside ``path`` and rename it into place.

    On Windows a rename over a file someone has open fails for a moment (the tasks reading
    the watcher's state): it is tried again for a second.
    """
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(data, indent=1, sort_keys=True))
    for attempt in range(20):
        try:
            os.replace(temp, path)
            return
        except PermissionError:
            if os.name != "nt" or attempt == 19:
                raise
            time.sleep(0.05)


def read_status(state_dir: Path, name: str = STATUS_FILE) -> dict[str, Any] | None:
    """The agent's status.json (or another of its files: SEED_FILE), or None if there is none."""
    try:
        found = json.loads((state_dir / name).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def health(status: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether the agent that wrote ``status`` is alive and syncing, with the reason."""
    if status is None:
        return False, "no status yet"
    age = time.time() - status["updated_at"]
    if status.get("stopped"):
        return False, "agent stopped"
    if age > 3 * STATUS_EVERY + 10:
        return False, f"status is {age:.0f}s old"
    if not status["share_mounted"]:
        return False, f"Windows share not mounted (marker {MARKER} missing)"
    if status["last_full_pass"] is None:
        return False, "no full pass yet"
    return True, "ok"


def degraded(status: dict[str, Any] | None) -> str | None:
    """Why a healthy agent still needs attention (problems, held deletions), else None."""
    if not status:
        return None
    problems = status.get("problems") or []
    if problems:
        first = problems[0]
        count = max(len(problems), status.get("errors") or 0)
        more = f" (+{count - 1} more)" if count > 1 else ""
        return f"{first['side']} {first['path']}: {first['reason']}{more}"
    return None


def share_id(folder: Path) -> str | None:
    """The identity written in a share's marker (None if there is no marker)."""
    try:
        text = (folder / MARKER).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("id:"):
            return line.split(":", 1)[1].strip()
    return text.strip() or "legacy"


def marker_text() -> str:
    """The content of a new share marker: a fresh identity, so a recreated folder is known."""
    return (f"filesim share marker: this folder is a NAS's Windows side; do not delete it\n"
            f"id: {uuid.uuid4()}\n")


# -- requests ----------------------------------------------------------------------------------

def submit(state_dir: Path, kind: str, **details: Any) -> str:
    """Ask the running agent for ``kind`` (with ``details``); return the request id."""
    if kind not in REQUEST_KINDS:
        raise ValueError(f"unknown request {kind!r}")
    folder = state_dir / REQUESTS
    folder.mkdir(exist_ok=True)
    request_id = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
    write_json_atomically(folder / f"{request_id}.json",
                          {**details, "kind": kind, "requested_at": time.time()})
    return request_id


def result(state_dir: Path, request_id: str) -> dict[str, Any] | None:
    """The agent's answer to a request, once it has one."""
    try:
        return json.loads((state_dir / REQUESTS / f"{request_id}.result.json").read_text())
    except (OSError, ValueError):
        return None


def ask(state_dir: Path, kind: str, timeout: float, **details: Any) -> dict[str, Any]:
    """Submit a request and wait for its result (``{"ok": False, "error": ...}`` at the timeout)."""
    request_id = submit(state_dir, kind, **details)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = result(state_dir, request_id)
        if answer is not None:
            (state_dir / REQUESTS / f"{request_id}.result.json").unlink(missing_ok=True)
            return answer
        time.sleep(0.05)
    (state_dir / REQUESTS / f"{request_id}.json").unlink(missing_ok=True)
    status = read_status(state_dir)
    return {"ok": False, "error": _unanswered(status, timeout),
            "pending": (status or {}).get("pending_paths", []),
            "problems": (status or {}).get("problems", [])}


def _unanswered(status: dict[str, Any] | None, timeout: float) -> str:
    """Why a request was not answered in time, as its status tells it."""
    healthy, why = health(status)
    if not healthy:
        return f"no answer from the agent within {timeout:.0f}s: {why}"
    assert status is not None
    blocking = [p for p in status.get("problems", []) if p.get("blocks", True)]
    if blocking:
        more = f" (+{len(blocking) - 1} more)" if len(blocking) > 1 else ""
        return (f"not in step after {timeout:.0f}s: {blocking[0]['side']} {blocking[0]['path']}: "
                f"{blocking[0]['reason']}{more}")
    if status.get("pending"):
        return f"not in step after {timeout:.0f}s: {status['pending']} change(s) still pending"
    return f"no answer from the agent within {timeout:.0f}s"
