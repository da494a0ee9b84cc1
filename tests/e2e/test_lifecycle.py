"""Nothing lost around the agent, on live NAS pods (issue #9).

A killed agent, a NAS folder deleted and created again, a symlink an NFS client plants, a
folder that refuses writes, the README's own check-sync, a file the system under test deletes,
and an export that cannot be flushed when the deployment goes. podman only: these tests reach
into containers and the host (``podman kill``, ``chattr``, the raw NFS client).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from harness import cpu_seconds, wait_until
from nfs4 import Client
from suite import invoke

from filesim.engines import EngineError


@pytest.fixture
def podman(engine):
    if engine.name != "podman":
        pytest.skip("reaches into containers and the host: podman engine only")
    return engine


def nfs_copy_in(engine, nas: str, files: dict[str, bytes]) -> None:
    """Write several files over NFS with one client container (libnfs)."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_bytes(data)
        script = "; ".join(f"nfs-cp /src/{n} '{engine._url(nas, n)}' >/dev/null" for n in files)
        engine.run(["podman", "run", "--rm", "--network", "host", "-v", f"{tmp}:/src:ro",
                    engine.image_ref, "sh", "-ec", script])


def agent_pid(engine, nas: str) -> int:
    """The host pid of a NAS's sync agent (tini's child in the sync container)."""
    tini = engine.run(["podman", "inspect", "--format", "{{.State.Pid}}",
                       engine._container(nas, "sync")], reads_only=True).stdout.strip()
    return int(Path(f"/proc/{tini}/task/{tini}/children").read_text().split()[0])


def log_lines(engine, nas: str) -> int:
    return len(engine.run(["podman", "logs", engine._container(nas, "sync")],
                          reads_only=True).stdout.splitlines())


def agent(engine, nas: str) -> dict:
    return next(s for s in engine.status() if s.name == nas).agent


def test_check_sync_on_a_fresh_deploy_leaves_no_errors_and_nothing_held(podman, data_root):
    result = invoke(podman, data_root, "check-sync", "nas-backup", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    time.sleep(3)
    status = agent(podman, "nas-backup")
    assert status["errors"] == 0 and status["held_deletions"] == 0 and status["problems"] == []


def test_a_killed_agent_then_deploy_loses_nothing_written_meanwhile(podman):
    podman.run(["podman", "kill", podman._container("nas-output-1", "sync")])
    written = {f"while-down-{i:02}.csv": f"row {i}\n".encode() for i in range(40)}
    nfs_copy_in(podman, "nas-output-1", written)

    podman.apply(print)
    podman.wait_ready(120, print)

    folder = podman.windows_folder("nas-output-1")
    wait_until(lambda: all((folder / n).exists() for n in written), 30)
    assert {n: (folder / n).read_bytes() for n in written} == written


def test_a_nas_folder_deleted_and_created_again_loses_nothing(podman, data_root):
    folder = podman.windows_folder("nas-output-1")
    shutil.rmtree(folder)
    written = {f"after-delete-{i:02}.txt": f"{i}\n".encode() for i in range(20)}
    nfs_copy_in(podman, "nas-output-1", written)

    assert invoke(podman, data_root, "setup").returncode == 0
    deployed = invoke(podman, data_root, "deploy")
    assert deployed.returncode == 0, deployed.stderr

    wait_until(lambda: all((folder / n).exists() for n in written), 30)
    assert {n: (folder / n).read_bytes() for n in written} == written


def test_the_whole_data_root_deleted_and_made_again_loses_nothing(podman, data_root):
    """The pods see the data root they started with: a new one of the same path needs new pods."""
    folder = podman.windows_folder("nas-backup")
    before = {f"before-{i:02}.txt": f"{i}\n".encode() for i in range(5)}
    nfs_copy_in(podman, "nas-backup", before)
    wait_until(lambda: all((folder / n).exists() for n in before), 30)
    # The watcher and the agents write in the root meanwhile (their state, versions): delete
    # again until it is gone, as a tester would.
    wait_until(lambda: removed(data_root), 30)
    data_root.mkdir()

    assert invoke(podman, data_root, "setup").returncode == 0
    deployed = invoke(podman, data_root, "deploy")
    assert deployed.returncode == 0, deployed.stderr
    # An agent whose share stayed unreachable restarted on its own (and mounted the new root);
    # deploy restarts every other one that still sees the deleted root.
    assert "its agent does not see the Windows folder: restarting it" in deployed.stderr

    wait_until(lambda: all((folder / n).exists() for n in before), 30)
    assert {n: (folder / n).read_bytes() for n in before} == before
    for nas in ("nas-backup", "nas-output-1", "nas-input-2"):
        assert invoke(podman, data_root, "check-sync", nas).returncode == 0, nas


def removed(folder) -> bool:
    """Whether ``folder`` is gone after one more try to delete it."""
    with contextlib.suppress(OSError):
        shutil.rmtree(folder)
    return not folder.exists()


def test_an_nfs_symlink_beside_a_windows_folder_never_restarts_the_agent(podman):
    folder = podman.windows_folder("nas-output-2")
    (folder / "reports").mkdir()
    (folder / "reports" / "q1.csv").write_text("the tester's\n")
    wait_until(lambda: podman.nfs_read("nas-output-2", "reports/q1.csv") is not None, 30)
    with Client("127.0.0.1", podman.server("nas-output-2").podman_port, uid=1000, gid=1000) as nfs:
        export = nfs.handle("/export")
        nfs.symlink(export, "results", "/tmp")

    time.sleep(5)
    restarts = podman.run(["podman", "inspect", "--format", "{{.RestartCount}}",
                           podman._container("nas-output-2", "sync")], reads_only=True).stdout
    assert restarts.strip() == "0"
    assert (folder / "reports" / "q1.csv").read_text() == "the tester's\n"
    assert not (folder / "results").exists()
    problems = {p["path"]: p["reason"] for p in agent(podman, "nas-output-2")["problems"]}
    assert "symlink" in problems["results"]


def test_a_windows_folder_refusing_writes_is_cheap_and_named_then_the_file_lands(podman, data_root):
    folder = podman.windows_folder("nas-backup")
    (folder / "locked").mkdir()
    wait_until(lambda: podman.nfs_read("nas-backup", "locked") is not None or
               podman.exec("nas-backup", "nfs", ["test", "-d", "/export/locked"]).returncode == 0, 30)
    subprocess.run(["chattr", "+i", str(folder / "locked")], check=True)
    try:
        nfs_copy_in(podman, "nas-backup", {"locked/out.csv": b"for the locked folder\n"})
        time.sleep(1)
        pid = agent_pid(podman, "nas-backup")
        cpu, lines = cpu_seconds(pid), log_lines(podman, "nas-backup")
        time.sleep(10)
        cpu = (cpu_seconds(pid) - cpu) / 10
        lines = log_lines(podman, "nas-backup") - lines
        assert cpu <= 0.10 and lines <= 60, (cpu, lines)
        status = json.loads(invoke(podman, data_root, "status", "--json").stdout)["servers"]
        [nas] = [s for s in status if s["name"] == "nas-backup"]
        assert [p["path"] for p in nas["agent"]["problems"]] == ["locked/out.csv"]
        assert nas["degraded"]
    finally:
        subprocess.run(["chattr", "-i", str(folder / "locked")], check=True)
    accepted = time.monotonic()
    wait_until(lambda: (folder / "locked" / "out.csv").exists(), 30)
    assert time.monotonic() - accepted <= 30


def test_a_testers_file_deleted_by_the_system_under_test_comes_back_with_restore(podman, data_root):
    folder = podman.windows_folder("nas-output-3")
    (folder / "input.csv").write_text("the tester's only copy\n")
    wait_until(lambda: podman.nfs_read("nas-output-3", "input.csv") is not None, 30)

    podman.nfs_remove("nas-output-3", "input.csv")
    wait_until(lambda: not (folder / "input.csv").exists(), 30)

    listed = invoke(podman, data_root, "versions", "nas-output-3", "--json")
    assert [v["path"] for v in json.loads(listed.stdout)] == ["input.csv"]
    restored = invoke(podman, data_root, "restore", "nas-output-3", "input.csv", "--json")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert json.loads(restored.stdout)["synced"] is True
    assert (folder / "input.csv").read_text() == "the tester's only copy\n"
    assert podman.nfs_read("nas-output-3", "input.csv") == b"the tester's only copy\n"


def kill_every_process(engine, nas: str) -> None:
    """SIGKILL a pod's processes, conmon first, as the OOM killer or a restored sandbox does."""
    ids = engine.run(["podman", "pod", "inspect", "--format",
                      "{{range .Containers}}{{.ID}} {{end}}", engine.pod_name(nas)],
                     reads_only=True).stdout.split()
    pids = engine.run(["podman", "inspect", "--format", "{{.State.ConmonPid}} {{.State.Pid}}", *ids],
                      reads_only=True).stdout.split()
    conmons, containers = pids[0::2], pids[1::2]
    subprocess.run(["kill", "-9", *conmons], check=True)
    subprocess.run(["kill", "-9", *containers], check=True)


def test_a_pod_killed_under_podman_is_named_flushed_once_and_redeployed(podman, data_root):
    """The machine's processes killed and the export unmounted, as after a reboot."""
    kill_every_process(podman, "nas-output-2")
    export = Path(podman._node_dir("nas-output-2"), "export")
    (export / "unseen.csv").write_bytes(b"written just before the kill\n")
    subprocess.run(["umount", str(export)], check=True)  # as after a reboot

    status = json.loads(invoke(podman, data_root, "status", "--json").stdout)
    item = next(s for s in status["servers"] if s["name"] == "nas-output-2")
    assert item["ready"] is False and "killed outside podman" in item["problem"]

    retired = podman.retire("nas-output-2", print)  # podman's own `pod stop` would hang here
    assert retired.removed, retired.why
    folder = podman.windows_folder("nas-output-2")
    assert (folder / "unseen.csv").read_bytes() == b"written just before the kill\n"

    deployed = invoke(podman, data_root, "deploy")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert podman.nfs_read("nas-output-2", "unseen.csv") == b"written just before the kill\n"


def test_destroy_flushes_and_keeps_an_export_it_cannot_flush(podman):
    folder = podman.windows_folder("nas-output-3")
    (folder / "jammed").mkdir()
    wait_until(lambda: podman.exec("nas-output-3", "nfs", ["test", "-d", "/export/jammed"]
                                   ).returncode == 0, 30)
    subprocess.run(["chattr", "+i", str(folder / "jammed")], check=True)
    try:
        nfs_copy_in(podman, "nas-output-3", {"jammed/stuck.csv": b"cannot reach Windows yet\n"})
        nfs_copy_in(podman, "nas-backup", {"last-moment.txt": b"written just before destroy\n"})

        with pytest.raises(EngineError, match="nas-output-3: export kept"):
            podman.destroy(print)
        [kept] = [s for s in podman.status() if s.name == "nas-output-3"]
        assert kept.problem.startswith("not deployed; its export is kept")

        assert podman.windows_folder("nas-backup").joinpath("last-moment.txt").read_bytes() == \
            b"written just before destroy\n"
        export = Path(podman._node_dir("nas-output-3"), "export")
        assert (export / "jammed" / "stuck.csv").read_bytes() == b"cannot reach Windows yet\n"
        assert not Path(podman._node_dir("nas-backup")).exists()
    finally:
        subprocess.run(["chattr", "-i", str(folder / "jammed")], check=True)
    podman.destroy(print)
    assert (folder / "jammed" / "stuck.csv").read_bytes() == b"cannot reach Windows yet\n"
    assert not Path(podman._node_dir("nas-output-3")).exists()
    podman.apply(print)  # the rest of the suite runs on a deployed topology again
    podman.wait_ready(120, print)


def test_a_nas_folder_deleted_file_by_file_loses_nothing_the_system_under_test_wrote(podman,
                                                                                  data_root):
    """Issue #19 case 1: Explorer deletes the folder file by file, the marker last."""
    nas = "nas-output-1"
    written = {f"r{i:03}.csv": f"written over NFS {i}\n".encode() for i in range(400)}
    nfs_copy_in(podman, nas, written)
    folder = podman.windows_folder(nas)
    wait_until(lambda: len(list(folder.glob("r*.csv"))) == 400, 60)

    files = sorted(p for p in folder.rglob("*") if p.is_file() and ".filesim" not in p.parts
                   and p.name != ".filesim-share")
    for path in files:
        path.unlink()
        time.sleep(10 / len(files))
    shutil.rmtree(folder)  # what is left: folders, the journal, the marker
    time.sleep(3)

    export = Path(podman._node_dir(nas), "export")
    listed = invoke(podman, data_root, "versions", nas, "--side", "nfs", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    kept = {v["path"] for v in json.loads(listed.stdout)}
    lost = [n for n in written if not (export / n).is_file() and n not in kept]
    assert lost == [], f"{len(lost)} of 400 neither on the export nor kept"

    assert invoke(podman, data_root, "setup").returncode == 0  # the folder again, a new marker
    if kept:  # what the guard let through is put back from the NFS side's versions
        restored = invoke(podman, data_root, "restore", nas, ".", "--side", "nfs", "--json")
        assert restored.returncode == 0, restored.stdout + restored.stderr
    wait_until(lambda: len(list(folder.glob("r*.csv"))) == 400, 60)
    assert {p.name: p.read_bytes() for p in folder.glob("r*.csv")} == written
