"""The host side touches only its own deployment (issue #20): ports, parallel tasks, words.

podman only: it holds ports on this host and runs tasks side by side.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
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
    holder = Path(f"/proc/{os.getpid()}/comm").read_text().strip()  # python, or pytest in CI
    assert f"nas-output-3: port 20699 is in use by PID {os.getpid()} ({holder})" in result.stderr
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


def test_a_seed_that_makes_no_progress_stops_deploy_naming_it(podman, tmp_path):
    """Issue #21: deploy waits while a seed progresses, and names one that stalls."""
    own = ["--engine", "podman", "--data-root", str(tmp_path), "--set", "namespace=filesim-stall",
           "--set", "namePrefix=stall-", *(f"--set=nasServers[{i}].enabled=false" for i in range(6)),
           "--set", "nasServers[6].podman.port=20698", "--set", "nasServers[6].seed.stallSeconds=3"]
    setup = subprocess.run([INVOKE, "setup", *own], capture_output=True, text=True,
                           cwd=PROJECT_ROOT, timeout=300)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    folder = tmp_path / "nas-output-3"
    for i in range(20000):  # and its README.txt
        sub = folder / f"d{i // 1000:02}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:05}.dat").write_bytes(b"x" * 1024)
    progress = Path(NODE_ROOT, "filesim-stall", "stall-nas-output-3", "state", "seed.json")
    deploy = subprocess.Popen([INVOKE, "deploy", *own], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
    frozen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not frozen:
            with contextlib.suppress(OSError, ValueError):
                seed = json.loads(progress.read_text())
                if seed.get("phase") == "copying" and 0 < seed.get("files_done", 0) < 20000:
                    tini = podman.run(["podman", "inspect", "--format", "{{.State.Pid}}",
                                       "stall-nas-output-3-pod-0-seed"], reads_only=True).stdout.strip()
                    frozen = [tini, *Path(f"/proc/{tini}/task/{tini}/children").read_text().split()]
                    subprocess.run(["kill", "-STOP", *frozen], check=True)  # a dead 9p mount, say
            time.sleep(0.05)
        assert frozen, "the seed was never seen copying"
        out, err = deploy.communicate(timeout=120)
    finally:
        if frozen:
            subprocess.run(["kill", "-CONT", *frozen], check=False)
        deploy.kill()
        subprocess.run([INVOKE, "destroy", "--force", *own], capture_output=True, cwd=PROJECT_ROOT,
                       timeout=300)
    assert deploy.returncode == 3, out + err
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(r"nas-output-3: its seed made no progress for 3s \(copying, \d+ of 20001 "
                        r"files copied\); see `invoke logs nas-output-3 --container init`", last)
    assert "/20001 files; nas-output-3 seeding" in err  # its progress was shown meanwhile
