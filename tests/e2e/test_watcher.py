"""The host watcher on a live deployment (issue #11): `invoke deploy` starts it, a dropped file
reaches NFS without waiting for a poll, a killed watcher falls back to polling (shown in
`invoke status`), and `invoke deploy` brings it back. podman only: it reads the export folder
on this host to time arrivals without a client's own start-up in the figure.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from harness import wait_until
from suite import invoke

NAS = "nas-input-1"


@pytest.fixture
def podman(engine, data_root):
    if engine.name != "podman":
        pytest.skip("reads the export folder on this host: podman engine only")
    yield engine
    invoke(engine, data_root, "watch", "--stop")


def _status(engine, data_root) -> dict:
    result = invoke(engine, data_root, "status", "--json")
    return json.loads(result.stdout)


def _mode(engine, data_root) -> str:
    [nas] = [s for s in _status(engine, data_root)["servers"] if s["name"] == NAS]
    return nas["agent"].get("windows_changes")


def _arrival(engine, name: str, data: bytes) -> float:
    """Seconds from writing ``name`` into the NAS folder to it being whole in the export."""
    export = Path(engine._node_dir(NAS)) / "export" / name
    started = time.monotonic()
    (engine.windows_folder(NAS) / name).write_bytes(data)
    wait_until(lambda: export.is_file() and export.read_bytes() == data, 30, step=0.02)
    return time.monotonic() - started


def test_deploy_starts_the_watcher_and_a_dropped_file_is_on_nfs_within_a_second(podman, data_root):
    deployed = invoke(podman, data_root, "deploy")
    assert deployed.returncode == 0, deployed.stderr
    assert "host watcher: running" in deployed.stdout
    assert _status(podman, data_root)["watcher"]["running"] is True
    wait_until(lambda: _mode(podman, data_root) == "journal", 20, step=0.5)

    seconds = [_arrival(podman, f"hinted-{i}.csv", f"row {i}\n".encode()) for i in range(5)]
    print(f"Windows -> NFS with the watcher: {[round(s, 2) for s in seconds]} s")
    assert max(seconds) <= 3.0  # generous; the figure itself is in the benchmark


def test_a_killed_watcher_falls_back_to_polling_and_deploy_brings_it_back(podman, data_root):
    assert invoke(podman, data_root, "deploy").returncode == 0
    wait_until(lambda: _mode(podman, data_root) == "journal", 20, step=0.5)

    os.kill(_status(podman, data_root)["watcher"]["pid"], signal.SIGKILL)
    wait_until(lambda: _mode(podman, data_root) == "polling", 30, step=0.5)
    table = invoke(podman, data_root, "status").stdout
    assert "polling" in table and "host watcher:" in table and "running (pid" not in table
    assert _arrival(podman, "while-polling.csv", b"found by a poll\n") <= 30

    assert "host watcher: running" in invoke(podman, data_root, "deploy").stdout
    wait_until(lambda: _mode(podman, data_root) == "journal", 20, step=0.5)
    assert _arrival(podman, "hinted-again.csv", b"hinted again\n") <= 3.0
