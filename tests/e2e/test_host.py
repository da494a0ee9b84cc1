"""The host side touches only its own deployment (issue #20): ports, parallel tasks, words.

podman only: it holds ports on this host and runs tasks side by side.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from suite import E2E_VALUES, invoke, podman_pods

from filesim import PROJECT_ROOT
from filesim.manifests.props import NODE_ROOT

INVOKE = str(Path(sys.executable).with_name("invoke"))


@pytest.fixture
def podman(engine):
    if engine.name != "podman":
        pytest.skip("holds ports and runs tasks on this host: podman engine only")
    return engine


def test_a_port_another_program_holds_stops_deploy_before_anything_starts(podman, tmp_path):
    own = ["--engine", "podman", "--data-root", str(tmp_path), "--set", "namespace=filesim-port",
           "--set", "namePrefix=port-", *(f"--set=nasServers[{i}].enabled=false" for i in range(6)),
           "--set", "nasServers[6].podman.port=20699"]
    setup = subprocess.run([INVOKE, "setup", *own], capture_output=True, text=True,
                           cwd=PROJECT_ROOT, timeout=300)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 20699))
        squatter.listen()

        result = subprocess.run([INVOKE, "deploy", *own], capture_output=True, text=True,
                                cwd=PROJECT_ROOT, timeout=300)

    assert result.returncode == 3, result.stdout + result.stderr
    assert f"nas-output-3: port 20699 is in use by PID {os.getpid()} (python" in result.stderr
    assert podman_pods("filesim-port") == {}
    assert not Path(NODE_ROOT, "filesim-port", "port-nas-output-3").exists()


def test_sixteen_parallel_unchanged_deploys_all_succeed_and_replace_nothing(podman, data_root):
    before = podman_pods(podman.values.namespace)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: invoke(podman, data_root, "deploy"), range(16)))
    failed = [r.stdout + r.stderr for r in results if r.returncode != 0]
    assert failed == []
    assert podman_pods(podman.values.namespace) == before
    assert all("unchanged" in r.stderr for r in results)


def test_status_of_a_nas_never_deployed_says_so_and_destroy_has_nothing_to_say(podman, tmp_path):
    own = ["--engine", "podman", "--data-root", str(tmp_path), "--values", str(E2E_VALUES),
           "--set", "namespace=filesim-never"]
    status = subprocess.run([INVOKE, "status", "--json", *own], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, timeout=120)
    servers = json.loads(status.stdout)["servers"]
    assert {s["problem"] for s in servers} == {"not deployed"}
    destroyed = subprocess.run([INVOKE, "destroy", *own], capture_output=True, text=True,
                               cwd=PROJECT_ROOT, timeout=120)
    assert destroyed.returncode == 0, destroyed.stderr
    assert destroyed.stderr.strip() == "nothing of deployment 'filesim-never' is here to remove"
