"""The tester's workflow on a live deployment (issue #13): wait until synced, deploy that
changes only what changed, check-sync that cleans up whatever happens. podman only: it stops
a container and reads the export folder on this host.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from harness import wait_until
from suite import invoke, podman_pods


@pytest.fixture
def podman(engine):
    if engine.name != "podman":
        pytest.skip("stops containers and reads exports on this host: podman engine only")
    return engine


def test_wait_synced_returns_once_a_file_written_on_either_side_is_on_the_other(podman, data_root):
    folder = podman.windows_folder("nas-backup")
    (folder / "dropped.csv").write_bytes(b"from the tester\n")
    started = time.monotonic()
    result = invoke(podman, data_root, "wait-synced", "nas-backup", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["ok"] is True
    assert podman.nfs_read("nas-backup", "dropped.csv") == b"from the tester\n"
    print(f"wait-synced after a Windows-side write: {time.monotonic() - started:.2f}s")

    podman.nfs_write("nas-backup", "written.csv", b"from the system\n")
    started = time.monotonic()
    result = invoke(podman, data_root, "wait-synced", "all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (folder / "written.csv").read_bytes() == b"from the system\n"
    assert "nas-backup: in step" in result.stdout
    assert time.monotonic() - started <= 10  # the figure is ~1-2 s; generous on a busy machine


def test_wait_synced_names_what_a_stopped_agent_left_pending(podman, data_root):
    container = podman._container("nas-output-1", "sync")
    podman.run(["podman", "stop", "--time", "5", container])
    try:
        (podman.windows_folder("nas-output-1") / "stranded.csv").write_text("waiting\n")
        result = invoke(podman, data_root, "wait-synced", "nas-output-1", "--timeout", "5", "--json")
        assert result.returncode == 1, result.stdout + result.stderr
        answer = json.loads(result.stdout)["servers"]["nas-output-1"]
        assert answer["ok"] is False and "stranded.csv" in answer["pending"]
    finally:
        podman.run(["podman", "start", container])
    wait_until(lambda: podman.nfs_read("nas-output-1", "stranded.csv") == b"waiting\n", 60)


def test_check_sync_with_no_time_to_wait_leaves_nothing_behind(podman, data_root):
    invoke(podman, data_root, "check-sync", "nas-backup", "--timeout", "0")
    time.sleep(3)  # anything still on its way has landed by now
    export = Path(podman._node_dir("nas-backup")) / "export"
    assert not list(podman.windows_folder("nas-backup").glob("filesim-check-*"))
    assert not list(export.glob("filesim-check-*"))


def test_a_second_deploy_without_a_change_restarts_nothing(podman, data_root):
    assert invoke(podman, data_root, "deploy").returncode == 0
    before = podman_pods(podman.values.namespace)
    again = invoke(podman, data_root, "deploy")
    assert again.returncode == 0, again.stderr
    assert podman_pods(podman.values.namespace) == before
    assert again.stderr.count(": unchanged") == len(podman.servers())
