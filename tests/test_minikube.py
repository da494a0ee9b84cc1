"""The minikube engine without a cluster: commands, preflight, paths, error translation.

No Kubernetes cluster or minikube can run on our machines. Where minikube/kubectl must answer,
tiny scripts on PATH stand in for them (they print what the real tools print); where the
Kubernetes API must answer, the fake API server of tests/support/fake_kube.py does. Each test
says which.
Everything else is real: the invoke tasks run as processes, against real kubeconfig files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fake_kube import FakeApiServer, FakeCluster
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from filesim import PROJECT_ROOT, values
from filesim.engines import minikube
from filesim.engines.kubernetes import diagnose, explain
from filesim.engines.minikube import MinikubeEngine, preflight
from filesim.run import Runner

FIXES = minikube.fixes("filesim")

INVOKE = str(Path(sys.executable).with_name("invoke"))
NODE_PATH = os.environ["PATH"]


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([INVOKE, *args], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          env={**os.environ, **(env or {})}, timeout=120)


def fake_tool(folder: Path, name: str, answers: dict[str, str]) -> None:
    """A stand-in for minikube/kubectl (they cannot run here): prints, for the first pattern that
    matches its arguments, what the real tool prints."""
    cases = "".join(f"  *'{pattern}'*) printf '%s\\n' '{output}' ;;\n"
                    for pattern, output in answers.items())
    script = folder / name
    script.write_text(f'#!/bin/sh\ncase "$*" in\n{cases}esac\n')
    script.chmod(0o755)


KUBECTL_1_34 = {"version": json.dumps({"clientVersion": {"major": "1", "minor": "34"}})}


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A PATH holding only the stand-ins a test creates."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def local_values(tmp_path, **minikube_settings):
    sets = [f"windowsRoot={tmp_path / 'share'}", "minikube.driver=docker"]
    sets += [f"minikube.{k}={v}" for k, v in minikube_settings.items()]
    return values.load([], sets)


def test_setup_dry_run_prints_the_windows_command_sequence():
    # The order that works on a fresh laptop: the folders exist before anything mounts them,
    # and the mount is filesim's own process, not a child of `minikube start` (#24).
    result = invoke("setup", "--engine", "minikube", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if not line.startswith("# preflight")]
    assert commands[0:7] == [f"# create C:\\simulator-data\\{nas} with .filesim-share and README.txt, "
                             "if missing" for nas in ("nas-input-1", "nas-input-2", "nas-input-3",
                                                      "nas-backup", "nas-output-1", "nas-output-2",
                                                      "nas-output-3")]
    assert commands[7] == ("minikube start -p filesim --driver=hyperv --memory=6144 --cpus=4 "
                           "--kubernetes-version=v1.33.0")
    assert commands[8] == ("# in the background, kept running by filesim: minikube -p filesim mount "
                           "--port=45445 'C:\\simulator-data:/mnt/simulator-data'")
    assert commands[9] == ("minikube -p filesim image build -t localhost/filesim-nas:0.1.0 "
                           "-f images/nas/Containerfile .")
    assert len(commands) == 10


def test_preflight_names_each_problem_and_its_fix(tmp_path, fake_bin):
    # minikube and kubectl stand-ins (scripts printing the real tools' output)
    fake_tool(fake_bin, "minikube", {"version": "v1.30.1"})
    fake_tool(fake_bin, "kubectl", {"version": json.dumps({"clientVersion": {"major": "1", "minor": "27+"}})})
    resolved = values.load([], ["minikube.kubernetesVersion=v1.28.3", "minikube.memory=2048"])

    problems = preflight(resolved, on_windows=False)

    assert problems == [
        "minikube v1.30.1 is too old: filesim needs v1.33 or newer; upgrade minikube",
        "kubectl 1.27 is too old: use v1.29 or newer",
        "minikube.kubernetesVersion v1.28.3 is too old: the sync agent is a native sidecar "
        "(Kubernetes v1.29+); set it to v1.33.0",
        "minikube.driver hyperv needs Windows: on this machine set minikube.driver to docker, kvm2 or qemu2",
        f"minikube.memory 2048 MiB is too small for 7 NAS servers: set minikube.memory to at least "
        f"{minikube.memory_needed(resolved)}",
        f"windowsRoot C:\\simulator-data is a Windows path but this machine is not Windows: set "
        f"windowsRoot to a local folder, e.g. {Path.home() / 'simulator-data'}",
    ]


@pytest.mark.parametrize(("facts", "expected"), [
    # Windows facts are faked: no Windows machine runs here (minikube's hyperv.go refuses a
    # shell that is neither elevated nor in Hyper-V Administrators; Home has no Hyper-V).
    (minikube.WindowsFacts("Professional", elevated=True, hyperv_admin=False), []),
    (minikube.WindowsFacts("Enterprise", elevated=False, hyperv_admin=True), []),
    (minikube.WindowsFacts("Professional", elevated=False, hyperv_admin=False),
     ["minikube's Hyper-V driver needs an elevated shell or membership of Hyper-V Administrators: "
      "run PowerShell as Administrator, or once as Administrator `Add-LocalGroupMember -SID "
      "S-1-5-32-578 -Member $env:USERNAME` and sign in again"]),
    (minikube.WindowsFacts("Core", elevated=True, hyperv_admin=True),
     ["Windows edition Core (Home) has no Hyper-V: install Docker Desktop and set minikube.driver "
      "to docker (docs/windows.md)"]),
])
def test_preflight_on_windows_checks_what_hyperv_needs(tmp_path, fake_bin, facts, expected):
    fake_tool(fake_bin, "minikube", {"version": "v1.37.0"})
    fake_tool(fake_bin, "kubectl", KUBECTL_1_34)
    resolved = values.load([], [f"windowsRoot={tmp_path}"])  # driver hyperv, the default
    assert preflight(resolved, on_windows=True, facts=lambda: facts) == expected
    # other drivers need none of it
    docker = values.load([], [f"windowsRoot={tmp_path}", "minikube.driver=docker"])
    assert preflight(docker, on_windows=True, facts=lambda: facts) == []


def test_preflight_missing_tools(tmp_path, fake_bin):
    problems = preflight(local_values(tmp_path), on_windows=False)
    assert [p.split(":")[0] for p in problems] == ["minikube is not installed", "kubectl is not installed"]
    assert "winget install Kubernetes.minikube" in problems[0]


def test_preflight_passes_on_a_good_machine(tmp_path, fake_bin):
    fake_tool(fake_bin, "minikube", {"version": "v1.37.0"})
    fake_tool(fake_bin, "kubectl", KUBECTL_1_34)
    assert preflight(local_values(tmp_path), on_windows=False) == []


#: A minikube stand-in whose `mount` behaves as the real one seen from the node: it fails when
#: the source folder does not exist yet, and the node (`ssh -- CMD`, run here) sees the source
#: at the target only while the mount process runs.
FAKE_MINIKUBE = """#!/bin/sh
PATH=/usr/bin:/bin
case "$*" in
  *version*) echo v1.37.0 ;;
  *status*) echo '{"APIServer": "Running"}' ;;
  *"image ls"*) echo localhost/filesim-nas:0.1.0 ;;
  *" mount "*)
    for spec; do :; done
    src=${spec%:*}; dst=${spec##*:}
    [ -d "$src" ] || { echo "Cannot find directory $src for mount"; exit 1; }
    ln -sfn "$src" "$dst"
    trap 'rm -f "$dst"; exit 0' TERM INT
    while :; do sleep 0.2; done ;;
  *" ssh "*) while [ "$1" != "--" ]; do shift; done; shift; exec "$@" ;;
esac
"""


@pytest.fixture
def mounting_minikube(tmp_path, fake_bin):
    """Values on this machine with the minikube stand-in above; its mount is stopped after."""
    (fake_bin / "minikube").write_text(FAKE_MINIKUBE)
    (fake_bin / "minikube").chmod(0o755)
    fake_tool(fake_bin, "kubectl", KUBECTL_1_34)
    resolved = values.load([], [f"windowsRoot={tmp_path / 'share'}", "minikube.driver=docker",
                                f"nodeRoot={tmp_path / 'node'}"])
    engine = MinikubeEngine(resolved, Runner())
    yield engine
    engine.mount.stop()


def _wait(predicate, seconds=15.0):
    import time

    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_setup_creates_the_folders_then_keeps_its_own_mount(mounting_minikube, tmp_path):
    engine = mounting_minikube
    messages = []
    engine.setup(messages.append)
    # the node sees the marker through the mount: the folders existed before it started
    assert (tmp_path / "node" / "nas-backup" / ".filesim-share").is_file()
    seen = engine.mount.seen()
    assert seen.running and seen.state["command"][-1] == f"{tmp_path / 'share'}:{tmp_path / 'node'}"
    assert any(m.startswith("started the minikube mount") for m in messages)
    line = engine.host_lines()[0]
    assert line.startswith(f"minikube mount: running (pid {seen.pid}, port 45445)")

    messages.clear()
    engine.setup(messages.append)  # nothing to do: the same supervisor and mount stay
    assert messages[-1] == "nothing to do: minikube is running, the folders, the mount and the image exist"
    assert engine.mount.seen().state["child"] == seen.state["child"]

    # the mount process dies (a closed window, a crash): the supervisor starts it again
    os.kill(seen.state["child"], 9)
    _wait(lambda: (engine.mount.seen().state.get("restarts") or 0) >= 1
          and engine.mount.seen().state.get("child") not in (None, seen.state["child"]))
    _wait(lambda: (tmp_path / "node").exists())
    assert "restarted 1 time(s), last ended: exit -9" in engine.host_lines()[0]

    said = engine.mount.stop()
    assert said == "stopped the minikube mount"
    assert not (tmp_path / "node").exists()  # minikube mount unmounts when stopped
    assert engine.host_lines()[0].startswith("minikube mount: not running; the agents see no "
                                             "Windows folder until `invoke setup --engine minikube`")


def test_a_mount_that_cannot_show_the_folders_is_one_line_with_its_fix(mounting_minikube, tmp_path,
                                                                       monkeypatch):
    engine = mounting_minikube
    engine.setup(lambda _: None)
    engine.mount.stop()
    (tmp_path / "node").mkdir()  # the node path is taken: the stand-in's mount cannot appear there
    monkeypatch.setattr(minikube, "MOUNT_TIMEOUT", 1.0)
    with pytest.raises(minikube.EngineError) as failure:
        engine.ensure_mount(lambda _: None)
    assert str(failure.value) == (
        f"the node does not see {tmp_path / 'share'} at {tmp_path / 'node'} after 1s: see "
        f"{tmp_path / 'share' / '.filesim-mount.log'}; on Windows allow port 45445 for minikube in "
        f"the firewall (docs/windows.md), then run `invoke setup --engine minikube` again")


def test_paths_keep_the_windows_flavour():
    engine = MinikubeEngine(values.load([]), Runner())
    paths = engine.paths("nas-backup")
    assert (paths.windows, paths.node, paths.container) == (
        "C:\\simulator-data\\nas-backup", "/mnt/simulator-data/nas-backup",
        "/mnt/windows-root/nas-backup")
    assert minikube.share_folder("/home/me/data", "nas-1") == "/home/me/data/nas-1"


@pytest.mark.parametrize("task", [["status"], ["deploy"], ["destroy"], ["logs", "nas-backup"],
                                  ["check-sync", "nas-backup"], ["probe-windows", "nas-backup"]])
def test_tasks_without_a_kube_context_fail_with_one_line(tmp_path, task):
    empty = tmp_path / "kubeconfig"
    empty.write_text("")
    (tmp_path / "share" / "nas-backup").mkdir(parents=True)
    (tmp_path / "share" / "nas-backup" / ".filesim-share").write_text("")
    result = invoke(*task, "--engine", "minikube", "--set", f"windowsRoot={tmp_path / 'share'}",
                    env={"KUBECONFIG": str(empty)})
    assert result.returncode == 3  # the machine is not ready (README: exit codes)
    assert result.stderr.strip().count("\n") == 0
    assert "no kube context 'filesim'" in result.stderr and "invoke setup --engine minikube" in result.stderr


def test_setup_on_a_machine_without_minikube_lists_each_problem(tmp_path):
    result = invoke("setup", "--engine", "minikube", env={"PATH": str(Path(sys.executable).parent)})
    assert result.returncode == 3  # the machine is not ready (README: exit codes)
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("minikube is not installed: install it")
    assert lines[1].startswith("kubectl is not installed: install it")
    assert all(": " in line for line in lines)


def test_check_sync_from_linux_names_where_to_run_it():
    result = invoke("check-sync", "nas-backup", "--engine", "minikube")
    assert result.returncode == 3  # the machine is not ready (README: exit codes)
    assert result.stderr.strip() == ("the Windows folder C:\\simulator-data\\nas-backup is on the Windows "
                                     "machine: run this task from PowerShell there")


def test_tasks_with_an_unreachable_cluster_fail_with_one_line(tmp_path):
    config = tmp_path / "kubeconfig"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "filesim",
        "clusters": [{"name": "filesim", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "filesim", "context": {"cluster": "filesim", "user": "filesim"}}],
        "users": [{"name": "filesim", "user": {"token": "x"}}],
    }))
    result = invoke("status", "--engine", "minikube", env={"KUBECONFIG": str(config)})
    assert result.returncode == 3  # the machine is not ready (README: exit codes)
    assert result.stderr.strip().count("\n") == 0
    assert "cannot reach the cluster of context 'filesim'" in result.stderr
    assert "minikube start -p filesim" in result.stderr


def test_explain_turns_api_failures_into_one_line():
    forbidden = ApiException(status=403, reason="Forbidden")
    forbidden.body = json.dumps({"message": 'deployments.apps is forbidden: User "dev" cannot create'})
    assert str(explain(forbidden, context="filesim", namespace="filesim", fixes=FIXES)).startswith(
        'permission denied by RBAC (deployments.apps is forbidden: User "dev" cannot create)')
    unauthorized = ApiException(status=401, reason="Unauthorized")
    assert "minikube update-context -p filesim" in str(
        explain(unauthorized, context="filesim", namespace="x", fixes=FIXES))
    assert "invoke setup --engine minikube" in str(
        explain(ConfigException("no context"), context="filesim", namespace="x", fixes=FIXES))
    assert "is minikube running" in str(
        explain(ConnectionRefusedError("Connection refused"), context="filesim", namespace="x", fixes=FIXES))


def pod(**status):
    return {"metadata": {"name": "nas-backup-abc"}, "status": status}


def waiting(name, reason, message="", image="localhost/filesim-nas:0.1.0"):
    return {"name": name, "image": image, "state": {"waiting": {"reason": reason, "message": message}}}


def test_diagnose_pod_problems():
    # pods as the API returns them (JSON), since no cluster can produce them here
    def no_logs(container):
        return ""

    evicted = pod(reason="Evicted",
                  message="Usage of EmptyDir volume nas-backup-export exceeds the limit 500Mi.")
    assert "outgrew storage.sizeLimit" in diagnose("nas-backup", evicted, no_logs, FIXES)
    pull = pod(containerStatuses=[waiting("nfs", "ImagePullBackOff")])
    assert diagnose("nas-backup", pull, no_logs, FIXES) == (
        "nas-backup: image localhost/filesim-nas:0.1.0 cannot be pulled (ImagePullBackOff): run "
        "`invoke setup --engine minikube`, which builds it inside minikube")
    crash = pod(initContainerStatuses=[waiting("sync", "CrashLoopBackOff")])
    last = "a\nb\nfilesim-sync: /mnt/windows/.filesim-share is missing"
    line = diagnose("nas-backup", crash, lambda container: last, FIXES)
    assert line == ("nas-backup: container sync keeps crashing; its last lines: a | b | "
                    "filesim-sync: /mnt/windows/.filesim-share is missing")
    pending = pod(conditions=[{"type": "PodScheduled", "status": "False",
                               "lastTransitionTime": "2026-12-01T10:00:00Z",
                               "message": "0/1 nodes: Insufficient memory"}])
    changed = 1796119200.0  # 2026-12-01T10:00:00Z
    assert "Insufficient memory" in diagnose("nas-backup", pending, no_logs, FIXES, now=changed + 31)
    # A node just started is "not ready" for a moment: that alone is no reason to stop waiting.
    assert diagnose("nas-backup", pending, no_logs, FIXES, now=changed + 5) is None
    assert diagnose("nas-backup", pod(phase="Running", conditions=[{"type": "Ready", "status": "True"}]),
                    no_logs, FIXES) is None


def recording_tool(folder: Path, name: str) -> Path:
    """A stand-in that records each call's arguments, one line per call."""
    calls = folder / f"{name}.calls"
    script = folder / name
    script.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    script.chmod(0o755)
    return calls


def test_apply_prepares_minikubes_node_through_ssh_and_keeps_exports_on_its_disk(fake_bin, monkeypatch,
                                                                               tmp_path):
    # minikube stand-in: records the node preparation; the API is the fake API server
    calls = recording_tool(fake_bin, "minikube")
    monkeypatch.setenv("PATH", f"{fake_bin}:{Path(shutil.which('node', path=NODE_PATH)).parent}")
    server = FakeApiServer(FakeCluster(), tmp_path / "kubeconfig", context="filesim")
    server.use(monkeypatch)
    try:
        engine = MinikubeEngine(values.load([], ["nasServers[6].enabled=false"]), Runner())
        engine.ensure_mount = lambda progress: False  # the mount has tests of its own (above)
        engine.apply(lambda message: None)
        assert len(server.cluster.names("deployments", "filesim")) == 6
    finally:
        server.close()
    prepared = calls.read_text().splitlines()
    # The script goes from its text (LF whatever the checkout), once; exports in minikube's
    # persisted /var/lib/minikube.
    assert re.fullmatch(r"-p filesim cp /tmp/\S+/export-fs.sh /tmp/filesim-export-fs.sh", prepared[0])
    assert prepared[1:] == [f"-p filesim ssh -- sudo FILESIM_NODE_ROOT=/var/lib/minikube/filesim sh "
                            f"/tmp/filesim-export-fs.sh prepare "
                            f"/var/lib/minikube/filesim/filesim/{nas} 524288000 256000"
                            for nas in ("nas-input-1", "nas-input-2", "nas-input-3", "nas-backup",
                                        "nas-output-1", "nas-output-2")]


def test_a_windows_style_clone_yields_byte_identical_scripts_and_image_inputs(tmp_path):
    # Git for Windows checks out with core.autocrlf=true: .gitattributes must keep every file LF,
    # or the minikube VM and the image build meet `\r` (#24). Real git, real clones of HEAD.
    clones = {}
    for autocrlf in ("true", "false"):
        clones[autocrlf] = tmp_path / autocrlf
        subprocess.run(["git", "clone", "-q", "-c", f"core.autocrlf={autocrlf}", str(PROJECT_ROOT),
                        str(clones[autocrlf])], check=True, capture_output=True, timeout=120)
    tracked = subprocess.run(["git", "ls-files"], cwd=clones["true"], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    differ = [p for p in tracked if (clones["true"] / p).read_bytes() != (clones["false"] / p).read_bytes()]
    assert differ == []
    linux_side = [p for p in tracked if p.startswith(("scripts/", "images/", ".ci/"))]
    assert "scripts/export-fs.sh" in linux_side and "images/nas/Containerfile" in linux_side
    assert [p for p in linux_side if b"\r" in (clones["true"] / p).read_bytes()] == []
