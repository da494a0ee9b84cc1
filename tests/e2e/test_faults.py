"""Faults on demand on live NAS pods, seen by a real NFS client (libnfs), and nothing lost (#22).

podman only: the client runs in a container of the NAS image on the host's network, and the
tests time it there. Each fault is put on with `invoke fault` or filesim.testing.fault, and
cleared, on nas-backup (bidirectional), with files written on both sides before and during.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time

import pytest
from harness import wait_until
from suite import E2E_VALUES, invoke

NAS = "nas-backup"


@pytest.fixture
def podman(engine, data_root):
    if engine.name != "podman":
        pytest.skip("times a libnfs client on the host's network: podman engine only")
    yield engine
    invoke(engine, data_root, "fault", NAS, "clear")  # whatever a failed test left on


def client(engine, script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) in a libnfs client container; URL is the NAS's export URL prefix."""
    port = engine.server(NAS).podman_port
    return subprocess.run(
        ["podman", "run", "--rm", "--network", "host", "-e",
         f"URL=nfs://127.0.0.1/export/%s?version=4&nfsport={port}&uid=1000&gid=1000",
         engine.image_ref, "sh", "-c", script], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **engine.run.env})  # the engine's containers.conf: its ulimits


def nfs_read(name: str) -> str:
    """A script line: read ``name`` over NFS to /tmp/out."""
    return f'nfs-cp "$(printf "$URL" {shlex.quote(name)})" /tmp/out'


def nfs_write(name: str, size_kib: int = 1) -> str:
    return (f"head -c {size_kib * 1024} /dev/urandom > /tmp/in && "
            f'nfs-cp /tmp/in "$(printf "$URL" {shlex.quote(name)})"')


def timed(engine, line: str, timeout: float = 60) -> tuple[int, float, str]:
    """Exit code, seconds and output of one client command, timed inside the container."""
    result = client(engine, f's=$(date +%s%N); {{ {line}; }} >/tmp/log 2>&1; c=$?; e=$(date +%s%N); '
                            f'echo "$c $(( (e - s) / 1000000 ))"; cat /tmp/log', timeout)
    code, millis = result.stdout.split("\n", 1)[0].split()
    return int(code), int(millis) / 1000, result.stdout.split("\n", 1)[1]


def status_fault(engine, data_root) -> str | None:
    servers = json.loads(invoke(engine, data_root, "status", "--json").stdout)["servers"]
    return next(s for s in servers if s["name"] == NAS)["fault"]


def on(engine, data_root, kind: str, *more: str) -> None:
    result = invoke(engine, data_root, "fault", NAS, kind, *more)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_until(lambda: status_fault(engine, data_root) == kind, 10)  # status shows it while on


def off(engine, data_root) -> None:
    result = invoke(engine, data_root, "fault", NAS, "clear")
    assert result.returncode == 0, result.stdout + result.stderr
    # reads and writes work again within 30 s (a new name each time: nfs-cp cannot overwrite)
    name = f"after-clear-{time.monotonic_ns()}.bin"
    wait_until(lambda: timed(engine, nfs_write(name) + " && " + nfs_read(name))[0] == 0, 30)


def test_each_fault_as_a_client_meets_it_and_nothing_is_lost(podman, data_root):
    folder = podman.windows_folder(NAS)
    before_windows = {f"win-before-{i}.txt": f"windows {i}\n" for i in range(3)}
    for name, text in before_windows.items():
        (folder / name).write_text(text)
    assert client(podman, " && ".join(nfs_write(f"nfs-before-{i}.bin") for i in range(3))).returncode == 0
    assert timed(podman, nfs_read("nfs-before-0.bin"))[0] == 0
    baseline = min(timed(podman, nfs_read("nfs-before-0.bin"))[1] for _ in range(3))

    on(podman, data_root, "readonly")
    code, _, said = timed(podman, nfs_write("refused.bin"))
    assert code != 0 and re.search(r"ROFS|[Rr]ead-only", said), said
    assert timed(podman, nfs_read("nfs-before-1.bin"))[0] == 0
    (folder / "win-during-readonly.txt").write_text("dropped while read-only\n")
    off(podman, data_root)

    on(podman, data_root, "full")
    code, _, said = timed(podman, nfs_write("too-big.bin", 2048))
    assert code != 0 and re.search(r"NOSPC|[Nn]o space", said), said
    assert timed(podman, nfs_read("nfs-before-1.bin"))[0] == 0
    (folder / "win-during-full.txt").write_text("dropped while full: it waits\n")
    off(podman, data_root)

    on(podman, data_root, "hang")
    code, seconds, _ = timed(podman, "timeout 5 " + nfs_read("nfs-before-2.bin"))
    assert code == 124 and seconds >= 4.5  # the read blocks until the client gives up
    off(podman, data_root)

    on(podman, data_root, "down")
    code, seconds, said = timed(podman, nfs_read("nfs-before-2.bin"))
    assert code != 0 and seconds < 3, said  # refused at once
    off(podman, data_root)

    on(podman, data_root, "slow=200")
    code, seconds, _ = timed(podman, nfs_read("nfs-before-0.bin"))
    assert code == 0 and seconds >= 0.2 + baseline
    off(podman, data_root)

    on(podman, data_root, "flaky=0.5")
    script = "; ".join(f"{nfs_read('nfs-before-0.bin')} >/dev/null 2>&1 && echo ok || echo reset"
                       for _ in range(20))
    outcomes = client(podman, script).stdout.split()
    assert len(outcomes) == 20 and "reset" in outcomes and "ok" in outcomes, outcomes
    off(podman, data_root)

    # nothing written before or during the faults is lost, on either side
    for name in ("win-during-readonly.txt", "win-during-full.txt", *before_windows):
        wait_until(lambda n=name: timed(podman, nfs_read(n))[0] == 0, 30)
    for i in range(3):
        wait_until(lambda i=i: (folder / f"nfs-before-{i}.bin").exists(), 30)
    assert {n: (folder / n).read_text() for n in before_windows} == before_windows


def test_a_fault_for_some_seconds_ends_by_itself(podman, data_root):
    on(podman, data_root, "down", "--for", "5")
    assert timed(podman, nfs_read("nfs-before-0.bin"))[0] != 0
    wait_until(lambda: timed(podman, nfs_write("after-deadline.bin"))[0] == 0, 30)
    wait_until(lambda: status_fault(podman, data_root) is None, 10)


def test_the_python_api_heals_on_the_way_out_and_deploy_ends_every_fault(podman, data_root,
                                                                          monkeypatch):
    from filesim.testing import fault

    monkeypatch.setenv("FILESIM_ENGINE", "podman")
    monkeypatch.setenv("FILESIM_DATA_ROOT", str(data_root))
    with fault(NAS, "readonly", values=[str(E2E_VALUES)]):
        assert timed(podman, nfs_write("api.bin"))[0] != 0
    assert timed(podman, nfs_write("api.bin"))[0] == 0

    on(podman, data_root, "hang")
    listed = invoke(podman, data_root, "faults", "--json")
    assert json.loads(listed.stdout) == [{"nas": NAS, "fault": "hang", "fault_until": None}]
    deployed = invoke(podman, data_root, "deploy")
    assert deployed.returncode == 0, deployed.stderr
    assert f"{NAS}: fault hang cleared" in deployed.stderr
    assert timed(podman, nfs_read("api.bin"))[0] == 0
    assert invoke(podman, data_root, "faults").stdout.strip() == "no fault is on"


def test_faults_the_node_cannot_make_and_bad_input_are_one_line_and_exit_2(podman, data_root):
    for args, says in ((["eio"], "needs device-mapper"), (["slow=-3"], "give milliseconds"),
                       (["down", "--for", "0"], "--for"), (["nope"], "unknown fault")):
        result = invoke(podman, data_root, "fault", NAS, *args)
        assert result.returncode == 2 and says in result.stderr and result.stderr.count("\n") == 1
    assert status_fault(podman, data_root) is None  # nothing was done
    started = time.monotonic()
    dry = invoke(podman, data_root, "fault", NAS, "down", "--dry-run")
    assert dry.returncode == 0 and "filesim-nfs --state /var/lib/filesim-sync fault set down" in dry.stdout
    assert status_fault(podman, data_root) is None and time.monotonic() - started < 30
