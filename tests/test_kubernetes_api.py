"""Every task of the kubernetes engine against a fake API server (tests/support/fake_kube.py).

No Kubernetes cluster can run on our machines: the API server is the one mock here, and it is
a real HTTP server the official client talks to (discovery, apply, exec over websockets). The
tasks run in-process through invoke, as a user types them; the Windows folders are real
folders. What the NAS pod would do is played by ``PlayedNas``: a file written over NFS appears
in the Windows folder (what the agent does), and the agent answers its requests.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import time
from pathlib import Path

import pytest
from fake_kube import FakeApiServer, FakeCluster, running_and_ready

from filesim import PROJECT_ROOT, values
from filesim.engines.kubernetes import KubernetesEngine, explain
from filesim.run import Runner

NS = "filesim"
SPEC = importlib.util.spec_from_file_location("filesim_tasks", PROJECT_ROOT / "tasks.py")
TASKS = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(TASKS)


class PlayedNas:
    """What the NAS pods answer to the engine's execs: the agent's files, NFS, requests."""

    def __init__(self, root: Path):
        self.root = root
        self.status = {"problems": [], "pending": 0, "conflicts": 0, "windows_changes": "polling",
                       "last_full_pass": time.time()}
        self.requests: list[list[str]] = []
        self.failing_pods: set[str] = set()
        self.answer = {"ok": True}

    def nas(self, pod: str) -> str:
        return re.sub(r"-[0-9a-f]{5}$", "", pod)

    def __call__(self, pod: str, container: str, argv: list[str]) -> tuple[int, str, str]:
        if pod in self.failing_pods:
            return 1, "", "error: container not found"
        folder = self.root / self.nas(pod)
        if argv[:2] == ["cat", "/var/lib/filesim-sync/status.json"]:
            return 0, json.dumps(self.status), ""
        if argv[0] == "cat" and argv[1].startswith("/mnt/windows-root/"):
            target = self.root / argv[1].removeprefix("/mnt/windows-root/")
            return (0, target.read_text(), "") if target.exists() else (1, "", "No such file")
        if argv[0] == "filesim-nfs":  # the NFS server's supervisor: a fault set or cleared
            self.requests.append(argv)
            kind = None if "clear" in argv else argv[argv.index("set") + 1]
            self.status["fault"] = {"kind": kind, "value": None, "until": None} if kind else None
            return 0, json.dumps({"ok": True, "kind": kind}), ""
        if argv[0] == "filesim-sync":
            self.requests.append(argv)
            if "--versions" in argv:
                return 0, json.dumps({"versions": [{"path": "a.txt", "at": "20261204T000000Z"}]}), ""
            return 0, "working\n" + json.dumps(self.answer), ""
        if argv[:2] == ["sh", "-c"]:
            script = argv[2]
            name = re.search(r"/export/([^?]+)\?", script).group(1)
            if "base64 -d" in script:  # nfs_write: the agent copies it to Windows
                data = base64.b64decode(re.search(r"printf %s '([^']*)'", script).group(1))
                (folder / name).write_bytes(data)
                return 0, "", ""
            if (folder / name).exists():  # nfs_read: what the agent copied from Windows
                return 0, base64.b64encode((folder / name).read_bytes()).decode(), ""
            return 1, "", "nfs-cp: No such file"
        if argv[0] == "nfs-rm":
            (folder / re.search(r"/export/([^?]+)\?", argv[1]).group(1)).unlink(missing_ok=True)
            return 0, "", ""
        return 127, "", f"{argv[0]}: not found"


class Node:
    """The node's side of one-shot pods: export-fs.sh calls recorded, state files served."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.final = {"stopped": True, "pending": 0, "unsynced": []}
        self.once_code = 0

    def __call__(self, argv: list[str]) -> tuple[int, str]:
        self.calls.append(argv)
        if argv[0] == "cat":
            return 0, json.dumps(self.final)
        if argv[0] == "filesim-nfs":  # the NFS server's supervisor: a fault set or cleared
            self.requests.append(argv)
            kind = None if "clear" in argv else argv[argv.index("set") + 1]
            self.status["fault"] = {"kind": kind, "value": None, "until": None} if kind else None
            return 0, json.dumps({"ok": True, "kind": kind}), ""
        if argv[0] == "filesim-sync":  # a one-shot flush
            return self.once_code, json.dumps({"ok": self.once_code == 0})
        return 0, ""

    def export_fs(self) -> list[list[str]]:
        """(action, dir, args…) of every export-fs.sh call."""
        return [argv[argv.index("export-fs") + 1:] for argv in self.calls if "export-fs" in argv]


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """A one-node fake cluster at v1.33, its kubeconfig in KUBECONFIG, and the played pods."""
    fake = FakeCluster()
    server = FakeApiServer(fake, tmp_path / "kubeconfig", context="fake")
    server.use(monkeypatch)
    monkeypatch.setenv("FILESIM_ENGINE", "kubernetes")
    monkeypatch.setenv("FILESIM_KUBE_CONTEXT", "fake")
    monkeypatch.setattr(KubernetesEngine, "poll_seconds", 0.05)
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("FILESIM_DATA_ROOT", str(data))
    fake.played = PlayedNas(data)
    fake.exec = fake.played
    fake.played_node = Node()
    fake.node = fake.played_node
    fake.data = data
    yield fake
    run("watch", "--stop")
    server.close()


def run(*argv: str) -> tuple[int, str, str]:
    """A task in this process, as `invoke ARGV` runs it: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from invoke import Collection, Program

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            Program(namespace=Collection.from_module(TASKS)).run(["invoke", *argv])
        except SystemExit as exc:
            code = exc.code or 0
    return code, out.getvalue(), err.getvalue()


def deployed(cluster: FakeCluster, *sets: str) -> None:
    """`invoke setup` then `invoke deploy` with these ``--set`` values; both must succeed."""
    flags = [f"--set={s}" for s in ("image.pullFrom=registry.example/filesim", *sets)]
    code, out, err = run("setup", *flags)
    assert code == 0, err
    code, out, err = run("deploy", *flags)
    assert code == 0, out + err


def test_deploy_applies_every_object_server_side_and_waits_for_ready(cluster):
    deployed(cluster)
    namespace = cluster.get("namespaces", "", NS)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert cluster.names("deployments", NS) == sorted(
        ["nas-input-1", "nas-input-2", "nas-input-3", "nas-backup", "nas-output-1", "nas-output-2",
         "nas-output-3"])
    assert len(cluster.names("persistentvolumes")) == 7
    assert {m["manager"] for m in cluster.get("deployments", NS, "nas-backup")["metadata"][
        "managedFields"]} == {"filesim"}
    # the node: the data root checked, then one export filesystem per NAS
    assert cluster.played_node.calls[0] == ["test", "-d", "/mnt/simulator-data"]
    prepared = cluster.played_node.export_fs()
    assert [p[:2] for p in prepared] == [["prepare", f"/var/lib/filesim/filesim/{nas}"] for nas in
                                        ("nas-input-1", "nas-input-2", "nas-input-3", "nas-backup",
                                         "nas-output-1", "nas-output-2", "nas-output-3")]
    assert (cluster.data / "nas-backup" / ".filesim-share").is_file()


def test_status_shows_every_nas_and_one_failed_exec_costs_only_that_nas(cluster):
    deployed(cluster)
    backup_pod = next(p for p in cluster.names("pods", NS) if p.startswith("nas-backup-"))
    cluster.played.failing_pods.add(backup_pod)
    code, out, err = run("status", "--json")
    assert code == 0, err
    servers = {s["name"]: s for s in json.loads(out)["servers"]}
    assert servers["nas-backup"]["ready"] and servers["nas-backup"]["agent"] == {}
    assert servers["nas-input-1"]["agent"]["windows_changes"] == "polling"
    code, out, err = run("status")
    assert code == 0 and "nas-output-3" in out and "host watcher: running" in out


def test_a_seeding_pod_reports_its_progress_and_a_crashing_one_its_last_lines(cluster):
    def seeding(pod):
        status = running_and_ready(pod)
        status["conditions"][1]["status"] = "False"
        status["initContainerStatuses"].insert(0, {"name": "seed", "image": "", "imageID": "",
                                                   "ready": False, "restartCount": 0,
                                                   "state": {"running": {}}})
        return status

    cluster.pod_status = seeding
    original = cluster.exec
    cluster.exec = lambda pod, container, argv: (
        (0, json.dumps({"phase": "copying", "files_total": 20001, "files_done": 5000,
                        "bytes_done": 2**20, "started_at": time.time() - 10,
                        "updated_at": time.time()}), "")
        if argv[-1].endswith("seed.json") else original(pod, container, argv))
    stall = [f"--set=nasServers[{i}].seed.stallSeconds=2" for i in range(7)]
    code, out, err = run("setup", "--set", "image.pullFrom=registry.example/filesim")
    code, out, err = run("deploy", "--timeout", "1", "--set", "image.pullFrom=registry.example/filesim",
                         *stall)
    assert code == 3  # the machine is not ready (README: exit codes)
    assert re.search(r"nas-input-1: its seed made no progress for 2s \(.*5000 of 20001 files copied", err)

    pod = next(p for p in cluster.names("pods", NS) if p.startswith("nas-backup-"))
    status = running_and_ready(cluster.get("pods", NS, pod))
    status["containerStatuses"][0]["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
    cluster.set_pod_status(NS, pod, status)
    cluster.logs[pod] = "starting\n.filesim-share is missing: the Windows share is not mounted\n"
    code, out, err = run("status", "--json")
    backup = next(s for s in json.loads(out)["servers"] if s["name"] == "nas-backup")
    assert backup["problem"].startswith("nas-backup: container ") and "keeps crashing" in backup["problem"]
    assert "the Windows share is not mounted" in backup["problem"]


def test_a_pod_not_scheduled_waits_its_grace_then_is_named(cluster):
    def unscheduled(pod):
        return {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient memory.",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}

    cluster.pod_status = unscheduled
    run("setup", "--set", "image.pullFrom=registry.example/filesim")
    code, _out, err = run("deploy", "--set", "image.pullFrom=registry.example/filesim")
    assert code == 3
    assert "cannot be scheduled: 0/1 nodes are available: 1 Insufficient memory." in err


def test_logs_print_the_pods_log(cluster, capfd):
    deployed(cluster)
    pod = next(p for p in cluster.names("pods", NS) if p.startswith("nas-input-2-"))
    cluster.logs[pod] = "copied a.txt\n"
    code, out, _err = run("logs", "nas-input-2")
    assert code == 0 and "copied a.txt" in out


def test_check_sync_probe_and_wait_synced_through_exec(cluster):
    deployed(cluster)
    code, out, err = run("check-sync", "nas-backup", "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["ok"] is True
    assert {"nfs_to_windows", "windows_to_nfs"} <= set(report["directions"])
    assert not [p for p in (cluster.data / "nas-backup").iterdir() if "check" in p.name]  # cleaned up
    code, out, err = run("probe-windows", "nas-backup")
    assert code == 0, out + err
    code, out, err = run("wait-synced", "nas-backup", "--json")
    assert code == 0, out + err
    barrier = cluster.played.requests[-1]
    assert barrier[:5] == ["filesim-sync", "--state", "/var/lib/filesim-sync", "--request", "barrier"]


def test_versions_and_restore_on_the_nfs_side_ask_the_agent(cluster):
    deployed(cluster)
    code, out, err = run("versions", "nas-backup", "--side", "nfs", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["path"] == "a.txt"
    code, out, err = run("restore", "nas-backup", "a.txt", "--side", "nfs", "--json")
    assert code == 0, out + err
    restore = next(r for r in cluster.played.requests if "restore" in r)
    assert restore[restore.index("--path") + 1] == "a.txt"


def test_a_bigger_export_is_a_deploy_that_succeeds(cluster):
    # The claim's request is constant and the PV carries the size: the API refuses a change of
    # a static claim's request (the fake does, as PersistentVolumeClaimResize does).
    deployed(cluster)
    claim = cluster.get("persistentvolumeclaims", NS, "nas-backup")
    deployed(cluster, "nasServers[3].storage.sizeLimit=2Gi")
    assert cluster.get("persistentvolumeclaims", NS, "nas-backup")["spec"] == claim["spec"]
    volume = cluster.get("persistentvolumes", "", "filesim-nas-backup")
    assert volume["spec"]["capacity"]["storage"] == "2Gi"
    assert ["prepare", "/var/lib/filesim/filesim/nas-backup", str(2 * 2**30)] in [
        p[:3] for p in cluster.played_node.export_fs()]


def test_a_nas_left_out_of_the_values_is_retired_then_pruned(cluster):
    deployed(cluster)
    deployed(cluster, "nasServers[6].enabled=false")
    assert "nas-output-3" not in cluster.names("deployments", NS)
    assert "filesim-nas-output-3" not in cluster.names("persistentvolumes")
    flush = [r for r in cluster.played.requests if "flush" in r]
    assert flush, "the retired NAS's agent was asked to flush first"
    assert ["remove", "/var/lib/filesim/filesim/nas-output-3"] in cluster.played_node.export_fs()


def test_destroy_flushes_every_nas_then_removes_everything_of_its_own(cluster):
    deployed(cluster)
    cluster.put("v1", "PersistentVolume", "", "other-team-volume",
                {"metadata": {"name": "other-team-volume",
                              "labels": {"app.kubernetes.io/part-of": "filesim"}}})
    code, out, err = run("destroy")
    assert code == 0, out + err
    assert cluster.names("deployments", NS) == [] and cluster.names("services", NS) == []
    assert cluster.names("persistentvolumes") == ["other-team-volume"]  # not this deployment's
    removed = [p for p in cluster.played_node.export_fs() if p[0] == "remove"]
    assert len(removed) == 7


def test_destroy_keeps_an_export_whose_changes_could_not_reach_windows(cluster):
    deployed(cluster)
    cluster.played.answer = {"ok": False}
    cluster.played_node.final = {"stopped": True, "pending": 3, "unsynced": ["report.csv"]}
    cluster.played_node.once_code = 1
    code, _out, err = run("destroy")
    assert code == 3
    assert "export kept" in err and "invoke destroy --force" in err
    assert not [p for p in cluster.played_node.export_fs() if p[0] == "remove"]
    code, _out, err = run("destroy", "--force")
    assert code == 0, err
    assert len([p for p in cluster.played_node.export_fs() if p[0] == "remove"]) == 7


def test_clusterips_outside_a_k3s_service_range_stop_deploy_before_anything_is_applied(
        tmp_path, monkeypatch):
    fake = FakeCluster(version=(1, 31), service_range="10.43.0.0/16")
    server = FakeApiServer(fake, tmp_path / "kubeconfig", context="k3d-dev")
    server.use(monkeypatch)
    monkeypatch.setenv("FILESIM_DATA_ROOT", str(tmp_path))
    try:
        code, _out, err = run("deploy", "--engine", "kubernetes", "--context", "k3d-dev")
        assert code == 3, err
        assert err.strip().startswith("nasServers[nas-input-1].service.clusterIP 10.96.100.11 is outside "
                                      "this cluster's service range 10.43.0.0/16")
        assert fake.names("deployments", "filesim") == [] and fake.get("namespaces", "", "filesim") is None
        # the example values for k3d give addresses inside it: the Services are admitted
        engine = KubernetesEngine(values.load(["values/default.yaml", "values/examples/k3d.yaml"],
                                              [f"windowsRoot={tmp_path}"]), Runner(), "k3d-dev")
        engine._export_fs = lambda *args: None  # the node's side is tested above
        engine._prepare_node = lambda: None
        engine.apply(lambda message: None)
        assert len(fake.names("services", "filesim")) == 7
    finally:
        server.close()


def test_api_refusals_are_one_line_with_their_fix(cluster):
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(context="fake"))
    cluster.put("v1", "Namespace", "", "hardened", {"metadata": {
        "name": "hardened", "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}})
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node"},
           "spec": {"containers": [{"name": "node", "image": "x",
                                    "securityContext": {"privileged": True}}]}}
    fixes = KubernetesEngine(values.load([]), Runner(), "fake").fixes
    with pytest.raises(client.ApiException) as refused:
        api.create_namespaced_pod("hardened", pod)
    line = str(explain(refused.value, context="fake", namespace="hardened", fixes=fixes))
    assert line.startswith("the namespace's Pod Security level refuses NAS pods (pods \"node\" is "
                           "forbidden: violates PodSecurity \"baseline:latest\": privileged")
    assert "kubectl label namespace hardened pod-security.kubernetes.io/enforce=privileged" in line
    with pytest.raises(client.ApiException) as missing:
        api.create_namespaced_pod("nowhere", pod)
    assert missing.value.status == 404
    assert str(explain(missing.value, context="fake", namespace="nowhere", fixes=fixes)) == (
        'Kubernetes API error 404 Not Found: namespaces "nowhere" not found')
    service = {"metadata": {"name": "nas"}, "spec": {"clusterIP": "10.43.0.20", "ports": [{"port": 2049}]}}
    cluster.put("v1", "Namespace", "", "filesim", {"metadata": {"name": "filesim"}})
    with pytest.raises(client.ApiException) as invalid:
        api.create_namespaced_service("filesim", service)
    assert invalid.value.status == 422 and str(explain(invalid.value, context="fake", namespace="filesim",
                                                       fixes=fixes)).startswith(
        'Kubernetes API error 422 Unprocessable Entity: Service "nas" is invalid: spec.clusterIPs')
    with pytest.raises(client.ApiException) as twice:
        api.create_namespace({"metadata": {"name": "hardened"}})
    assert twice.value.status == 409 and json.loads(twice.value.body)["reason"] == "AlreadyExists"


def test_setup_checks_the_cluster(cluster, monkeypatch):
    code, _out, err = run("setup", "--set", "image.pullFrom=registry.example/filesim")
    assert code == 0, err
    assert "the cluster pulls registry.example/filesim" in err
    code, _out, err = run("setup")  # a context that is no kind/k3d/Docker Desktop: no way to load
    assert code == 3 and "set image.pullFrom to a registry the cluster pulls from" in err
    old = FakeCluster(version=(1, 28))
    server = FakeApiServer(old, Path(str(cluster.data)) / "old-kubeconfig", context="old")
    server.use(monkeypatch)
    try:
        code, _out, err = run("setup", "--context", "old")
        assert code == 3 and "needs v1.29 or newer" in err
    finally:
        server.close()
    two = FakeCluster(nodes=2)
    server = FakeApiServer(two, Path(str(cluster.data)) / "two-kubeconfig", context="two")
    server.use(monkeypatch)
    try:
        code, _out, err = run("setup", "--context", "two")
        assert code == 3 and "has 2 nodes" in err and "one-node cluster" in err
    finally:
        server.close()


def test_the_fake_merges_applies_by_field_manager():
    # server-side apply: a field a manager stops applying goes, unless another manager owns it
    fake = FakeCluster()
    fake.put("v1", "ConfigMap", "default", "c", {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}},
             manager="filesim")
    fake.put("v1", "ConfigMap", "default", "c", {"metadata": {"name": "c"}, "data": {"b": "2"}},
             manager="other")
    fake.put("v1", "ConfigMap", "default", "c", {"metadata": {"name": "c"}, "data": {}}, manager="filesim")
    assert fake.get("configmaps", "default", "c")["data"] == {"b": "2"}


def test_a_fault_is_asked_of_the_pods_supervisor_shown_and_cleared_by_deploy(cluster):
    deployed(cluster)
    code, out, err = run("fault", "nas-backup", "readonly", "--for", "30")
    assert code == 0, err
    asked = cluster.played.requests[-1]
    assert asked == ["filesim-nfs", "--state", "/var/lib/filesim-sync", "fault", "set", "readonly",
                     "--for", "30", "--timeout", "120"]
    assert any(call[0].startswith("nas-backup-") and call[1] == "nfs" for call in cluster.exec_calls)
    code, out, err = run("faults", "--json")
    assert {f["nas"] for f in json.loads(out)} == {"nas-backup", "nas-input-1", "nas-input-2",
                                                  "nas-input-3", "nas-output-1", "nas-output-2",
                                                  "nas-output-3"}  # one played status for all
    code, out, err = run("deploy", "--set", "image.pullFrom=registry.example/filesim")
    assert code == 0 and "fault readonly cleared" in err
    assert cluster.played.requests[-1][4] == "clear"
    code, out, err = run("fault", "nas-backup", "eio")
    assert code == 2 and "needs device-mapper" in err
