"""The kubernetes engine where no cluster can run: help, dry runs, one-line failures, snapshots.

No Kubernetes API server runs on this machine, so these tests stop where a cluster would answer:
the dry run prints what setup would do, and a context whose server does not answer must end
in one line naming the fix. The e2e suite runs the engine for real where FILESIM_KUBE_CONTEXT
names a reachable cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from filesim import PROJECT_ROOT, values
from filesim.engines import ENGINES
from filesim.engines.kubernetes import cluster_kind, image_commands, kind_config, version_tuple
from filesim.errors import EXIT_ENVIRONMENT
from filesim.manifests import Target, manifests

INVOKE = str(Path(sys.executable).with_name("invoke"))
EXAMPLES = PROJECT_ROOT / "values" / "examples"
DEFAULTS = PROJECT_ROOT / "values" / "default.yaml"


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INVOKE, *args], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          env={**os.environ, **(env or {})}, timeout=120)


def kubeconfig(folder: Path, context: str) -> Path:
    """A kubeconfig whose only context points at a port where nothing listens."""
    path = folder / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
    }))
    return path


def test_every_engine_is_named_in_the_task_list_and_help():
    listing = invoke("--list").stdout
    help_text = invoke("--help", "deploy").stdout
    for engine in ENGINES:
        assert engine in listing and engine in help_text


def test_setup_dry_run_for_kind_prints_the_image_load_and_the_cluster_config(tmp_path):
    result = invoke("setup", "--engine", "kubernetes", "--context", "kind-filesim", "--dry-run",
                    "--values", str(DEFAULTS), "--values", str(EXAMPLES / "kind.yaml"))
    assert result.returncode == 0, result.stderr
    assert "kind load docker-image localhost/filesim-nas:0.1.0 --name filesim" in result.stdout
    assert "the cluster of context kind-filesim answers" in result.stdout
    assert "hostPath: /srv/simulator-data" in result.stderr
    assert "containerPath: /mnt/simulator-data" in result.stderr
    assert not Path("/srv/simulator-data").exists()  # a dry run creates nothing


def test_setup_dry_run_for_docker_desktop_builds_with_docker_and_names_the_node_path():
    result = invoke("setup", "--engine", "kubernetes", "--context", "docker-desktop", "--dry-run",
                    "--data-root", "/nonexistent-root")
    assert result.returncode == 0, result.stderr
    assert "docker build -t localhost/filesim-nas:0.1.0" in result.stdout
    # Without the example the node path is minikube's: setup says what Docker Desktop needs.
    assert "/run/desktop/mnt/host/c/simulator-data" in result.stderr


def test_setup_for_a_cluster_it_cannot_load_images_into_asks_for_a_registry(tmp_path):
    result = invoke("setup", "--engine", "kubernetes", "--context", "team-cluster", "--dry-run",
                    "--data-root", str(tmp_path))
    assert result.returncode == EXIT_ENVIRONMENT
    assert "set image.pullFrom to a registry the cluster pulls from" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("task", [["status"], ["deploy"], ["destroy"], ["logs", "nas-backup"],
                                  ["wait-synced", "all"], ["setup"]])
def test_cluster_tasks_without_a_reachable_cluster_end_in_one_line(tmp_path, task):
    config = kubeconfig(tmp_path, "kind-filesim")
    result = invoke(*task, "--engine", "kubernetes", "--data-root", str(tmp_path),
                    env={"KUBECONFIG": str(config), "FILESIM_KUBE_CONTEXT": ""})
    assert result.returncode == EXIT_ENVIRONMENT, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    line = result.stderr.strip()
    assert line.count("\n") == 0, line
    assert "cannot reach the cluster of context 'kind-filesim'" in line
    assert "kubectl --context kind-filesim get nodes" in line


def test_without_any_kube_context_the_error_says_how_to_name_one(tmp_path):
    empty = tmp_path / "kubeconfig"
    empty.write_text("")
    result = invoke("status", "--engine", "kubernetes", "--data-root", str(tmp_path),
                    env={"KUBECONFIG": str(empty), "FILESIM_KUBE_CONTEXT": ""})
    assert result.returncode == EXIT_ENVIRONMENT
    assert result.stderr.strip().count("\n") == 0
    assert "--context" in result.stderr and "FILESIM_KUBE_CONTEXT" in result.stderr


def test_cluster_kinds_and_how_their_image_gets_there():
    assert [cluster_kind(c) for c in ("docker-desktop", "rancher-desktop", "kind-a", "k3d-b", "gke_x")] \
        == ["docker-desktop", "rancher-desktop", "kind", "k3d", "other"]
    assert image_commands("k3d", "k3d-dev", "img:1")[-1] == ["k3d", "image", "import", "img:1", "-c", "dev"]
    rancher = image_commands("rancher-desktop", "rancher-desktop", "img:1")
    assert rancher[0][:3] == ["nerdctl", "--namespace", "k8s.io"]
    assert image_commands("other", "gke_x", "img:1") == []
    assert version_tuple("v1.29.3-gke.100") == (1, 29, 3)


def test_the_kind_config_mounts_the_data_root_where_the_values_say():
    loaded = values.load([DEFAULTS, EXAMPLES / "kind.yaml"])
    config = kind_config(loaded)
    assert "hostPath: /srv/simulator-data" in config and "containerPath: /mnt/simulator-data" in config


def node_paths_of(loaded) -> dict[str, object]:
    """The parts of one NAS's manifests that depend on where the node sees the data root."""
    objs = [o for m in manifests(loaded, Target.KUBERNETES) if m.filename.startswith("nas-backup")
            for o in m.objects]
    volumes = [v for o in objs if o["kind"] == "Deployment"
               for v in o["spec"]["template"]["spec"]["volumes"] if "hostPath" in v]
    return {"volumes": volumes, "objects": [o["kind"] + "/" + o["metadata"]["name"] for o in objs]}


@pytest.mark.parametrize("example", ["docker-desktop", "kind"])
def test_snapshot_of_the_node_paths_per_cluster(example, snapshot_json):
    loaded = values.load([DEFAULTS, EXAMPLES / f"{example}.yaml"])
    assert node_paths_of(loaded) == snapshot_json


def test_docker_desktop_serves_the_windows_folder_from_its_host_mount():
    loaded = values.load([DEFAULTS, EXAMPLES / "docker-desktop.yaml"])
    assert loaded.windows_root == "C:\\simulator-data"
    paths = {v["hostPath"]["path"] for v in node_paths_of(loaded)["volumes"]}
    assert "/run/desktop/mnt/host/c/simulator-data" in paths


K3D_EXAMPLE = Path(__file__).parents[1] / "values" / "examples" / "k3d.yaml"
RANCHER_EXAMPLE = Path(__file__).parents[1] / "values" / "examples" / "rancher-desktop.yaml"


def test_cluster_ips_outside_the_clusters_service_range_are_named_before_anything_is_applied():
    """Issue #24: k3s, k3d and Rancher Desktop serve 10.43.0.0/16, not minikube's 10.96.0.0/12."""
    from filesim.engines.kubernetes import outside_range, service_range

    k3s = service_range("10.43.0.1", [])
    assert str(k3s) == "10.43.0.0/16"
    assert str(service_range("10.96.0.1", [])) == "10.96.0.0/12"
    assert str(service_range("10.200.0.1", ["10.200.0.0/20"])) == "10.200.0.0/20"  # ServiceCIDR
    problems = outside_range(values.load([]), k3s)
    assert len(problems) == 7 and problems[0] == (
        "nasServers[nas-input-1].service.clusterIP 10.96.100.11 is outside this cluster's service "
        "range 10.43.0.0/16: give every NAS an address inside it (values/examples/k3d.yaml and "
        "rancher-desktop.yaml do, for 10.43.0.0/16)")
    for example in (K3D_EXAMPLE, RANCHER_EXAMPLE):
        assert outside_range(values.load([values.DEFAULT_VALUES, example]), k3s) == []
    assert outside_range(values.load([]), service_range("10.96.0.1", [])) == []
