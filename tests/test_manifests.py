"""Manifests: snapshots of both targets, offline schema validation, our own policy checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from filesim import PROJECT_ROOT, values
from filesim.manifests import OUT_MARKER, SynthError, Target, ganesha, manifests, synth

MINIMAL = Path(__file__).parent / "values" / "valid" / "minimal.yaml"
EVERYTHING = Path(__file__).parent / "values" / "valid" / "everything.yaml"
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
SPECS = {"default": None, "minimal": MINIMAL}


def objects(values_file, target: Target) -> list[dict]:
    loaded = values.load([values_file] if values_file else [])
    node_root = "/srv/simulator-data" if target is Target.PODMAN else None
    return [obj for m in manifests(loaded, target, node_root) for obj in m.objects]


def pod_specs(objs):
    return [o["spec"]["template"]["spec"] for o in objs if o["kind"] == "Deployment"]


def all_containers(spec):
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.mark.parametrize("target", list(Target))
@pytest.mark.parametrize("spec", SPECS)
def test_snapshot(spec, target, snapshot_json):
    loaded = values.load([SPECS[spec]] if SPECS[spec] else [])
    node_root = "/srv/simulator-data" if target is Target.PODMAN else None
    assert {m.filename: m.objects for m in manifests(loaded, target, node_root)} == snapshot_json


def test_synth_is_deterministic():
    assert objects(None, Target.KUBERNETES) == objects(None, Target.KUBERNETES)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values_file", [None, MINIMAL, EVERYTHING],
                         ids=["default", "minimal", "everything"])
def test_kubernetes_manifests_validate_offline(values_file, version):
    for obj in objects(values_file, Target.KUBERNETES):
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("target", list(Target))
def test_policy_rules_the_schemas_do_not_enforce(target):
    objs = objects(EVERYTHING, target) + objects(None, target)
    for spec in pod_specs(objs):
        assert spec["restartPolicy"] in ("Always", "OnFailure", "Never")
        for volume in spec["volumes"]:
            if "hostPath" in volume:
                # The engine prepares the export filesystems: never create them on the node's disk.
                prepared = volume["hostPath"]["path"].startswith("/var/lib/filesim/")
                assert volume["hostPath"]["type"] == ("Directory" if prepared else "DirectoryOrCreate")
        for container in all_containers(spec):
            sc = container["securityContext"]
            assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert set(sc["capabilities"]["add"]) <= {
                "DAC_READ_SEARCH", "FOWNER", "SETGID", "SETUID", "DAC_OVERRIDE", "NET_BIND_SERVICE"}
            assert sc["readOnlyRootFilesystem"] is True
            assert container.get("restartPolicy") in (None, "Always")
            assert "limits" in container["resources"] and "memory" in container["resources"]["limits"]


def test_kubernetes_pod_shape():
    spec = pod_specs(objects(None, Target.KUBERNETES))[3]
    seed, sync = spec["initContainers"]
    assert seed["args"][:1] == ["filesim-sync"] and "--once" in seed["args"]
    assert sync["restartPolicy"] == "Always" and "--once" not in sync["args"]
    assert sync["startupProbe"]["exec"]["command"][-1] == "--health"
    assert [c["name"] for c in spec["containers"]] == ["nfs"]
    assert spec["restartPolicy"] == "Always"


def test_podman_pod_shape():
    objs = objects(None, Target.PODMAN)
    assert {o["kind"] for o in objs} == {"ConfigMap", "Deployment"}
    specs = pod_specs(objs)
    for spec in specs:
        assert spec["restartPolicy"] == "OnFailure" and spec["hostNetwork"] is True
        assert [c["name"] for c in spec["initContainers"]] == ["seed"]
        assert [c["name"] for c in spec["containers"]] == ["sync", "nfs"]
        assert all("restartPolicy" not in c for c in all_containers(spec))
    names = [v["name"] for spec in specs for v in spec["volumes"]]
    assert len(names) == len(set(names)), "podman shares volumes by name: they must be unique"
    confs = [o["data"]["ganesha.conf"] for o in objs if o["kind"] == "ConfigMap"]
    assert all("Bind_Addr = 127.0.0.1;" in c for c in confs)
    ports = {c.split("NFS_Port = ")[1].split(";")[0] for c in confs}
    assert len(ports) == 7


def test_nfs_v3_gets_rpcbind_started_before_ganesha():
    [spec] = pod_specs(objects(EVERYTHING, Target.KUBERNETES))
    first = spec["initContainers"][0]
    assert first["name"] == "rpcbind" and first["restartPolicy"] == "Always"
    assert first["args"] == ["rpcbind", "-f", "-w"]
    assert set(first["securityContext"]["capabilities"]["add"]) == {"NET_BIND_SERVICE", "SETGID", "SETUID"}
    default = pod_specs(objects(None, Target.KUBERNETES))[0]
    assert "rpcbind" not in [c["name"] for c in default["initContainers"]]


def test_persistent_volumes_would_really_mount():
    objs = objects(EVERYTHING, Target.KUBERNETES)
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    for pv in (o for o in objs if o["kind"] == "PersistentVolume"):
        nas = pv["metadata"]["labels"]["app.kubernetes.io/instance"]
        assert pv["spec"]["nfs"]["server"] == services[nas]["spec"]["clusterIP"]
        assert pv["spec"]["storageClassName"] == ""
        assert pv["spec"]["mountOptions"][0].startswith("nfsvers=")
    reports_pv = next(o for o in objs if o["kind"] == "PersistentVolume")
    assert {"nfsvers=3", "nolock"} <= set(reports_pv["spec"]["mountOptions"])
    for pvc in (o for o in objs if o["kind"] == "PersistentVolumeClaim"):
        assert pvc["spec"]["storageClassName"] == ""
        assert pvc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == pvc["metadata"]["name"]


def test_discovery_config_map_lists_every_enabled_nas():
    objs = objects(EVERYTHING, Target.KUBERNETES)
    [discovery] = [o for o in objs if o["metadata"]["name"] == "filesim-nas-discovery"]
    servers = json.loads(discovery["data"]["nas-servers.json"])
    assert list(servers) == ["reports"]  # the disabled NAS is left out
    assert servers["reports"] == {"access": "rw", "dns": "reports.sim.svc.cluster.local",
                                  "host": "10.96.100.23", "nfsVersion": "3", "path": "/export",
                                  "port": 2049, "pvc": "reports", "role": "output"}


def test_checkov_finds_nothing_beyond_the_justified_skips(tmp_path):
    loaded = values.load([])
    synth(loaded, Target.KUBERNETES, tmp_path / "k8s")
    result = subprocess.run([str(Path(sys.executable).with_name("checkov")), "--config-file",
                             str(PROJECT_ROOT / ".checkov.yaml"), "-d", str(tmp_path / "k8s"),
                             "-o", "json"], capture_output=True, text=True)
    report = json.loads(result.stdout)
    failed = [c["check_id"] + " " + c["resource"] for r in (report if isinstance(report, list) else [report])
              for c in r["results"]["failed_checks"]]
    assert failed == []
    assert result.returncode == 0


def test_synth_writes_one_file_per_nas_plus_shared(tmp_path):
    out = tmp_path / "out"
    written = synth(values.load([]), Target.KUBERNETES, out)
    assert sorted(p.name for p in written) == sorted(
        ["filesim.k8s.yaml"] + [f"{n}.k8s.yaml" for n in (
            "nas-input-1", "nas-input-2", "nas-input-3", "nas-backup", "nas-output-1",
            "nas-output-2", "nas-output-3")])
    assert (out / OUT_MARKER).exists()
    docs = list(yaml.safe_load_all((out / "nas-backup.k8s.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment", "Service", "PersistentVolume",
                                          "PersistentVolumeClaim"]


def test_synth_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "precious.txt").write_text("mine")
    with pytest.raises(SynthError, match="did not write"):
        synth(values.load([]), Target.KUBERNETES, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["precious.txt"]


def test_invoke_synth_with_broken_values_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    synth(values.load([]), Target.KUBERNETES, out)
    before = {p.name: p.read_text() for p in out.iterdir()}
    bad = tmp_path / "bad.yaml"
    bad.write_text("nasServers:\n  - name: Bad_Name\n    role: output\n    service: {clusterIP: nope}\n"
                   "    podman: {port: 20001}\n  - name: nas-output-2\n    service: {clusterIP: 10.0.0.1}\n"
                   "    podman: {port: 1}\n")
    result = subprocess.run([str(Path(sys.executable).with_name("invoke")), "synth", "--values", str(bad),
                             "--out", str(out)], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "nasServers[0].name", "nasServers[1].podman.port", "nasServers[0].service.clusterIP"]
    assert {p.name: p.read_text() for p in out.iterdir()} == before


def test_invoke_synth_prints_the_summary_table(tmp_path):
    result = subprocess.run([str(Path(sys.executable).with_name("invoke")), "synth", "--target", "podman",
                             "--out", str(tmp_path / "m")], capture_output=True, text=True,
                            cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()[:8]
    assert header.split() == ["NAS", "ROLE", "MODE", "INTERVAL", "ENDPOINT"]
    assert rows[3].split() == ["nas-backup", "backup", "bidirectional", "2s", "127.0.0.1:20494/export"]


def volumes_by_suffix(spec):
    return {v["name"].rsplit("-", 1)[-1]: v for v in spec["volumes"]}


@pytest.mark.parametrize("target", list(Target))
def test_export_and_state_are_node_folders_the_engine_prepares(target):
    loaded = values.load([])
    for nas, spec in zip(loaded.servers, pod_specs(objects(None, target)), strict=True):
        own = volumes_by_suffix(spec)
        for kind in ("export", "state"):
            assert own[kind]["hostPath"] == {"path": f"/var/lib/filesim/filesim/{nas.name}/{kind}",
                                             "type": "Directory"}
        seed = next(c for c in spec["initContainers"] if c["name"] == "seed")
        assert "--require-own-filesystem" in seed["args"]


@pytest.mark.parametrize("target, clients", [
    (Target.PODMAN, "127.0.0.1/32"),
    (Target.KUBERNETES, "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16"),
])
def test_exports_squash_root_and_admit_only_the_engines_clients(target, clients):
    confs = [o["data"]["ganesha.conf"] for o in objects(None, target) if o["kind"] == "ConfigMap"
             and "ganesha.conf" in o.get("data", {})]
    assert len(confs) == 7
    for conf in confs:
        assert "Squash = Root_Squash;" in conf and "No_Root_Squash" not in conf
        assert "Anonymous_Uid = 65534;" in conf and "Anonymous_Gid = 65534;" in conf
        assert f"Clients = {clients};" in conf


def test_squash_and_clients_follow_values():
    loaded = values.load([], ["nasServers[3].nfs.squash=all", "nasServers[3].nfs.anonymousUid=1000",
                              "nasServers[3].nfs.allowedClients=[10.1.0.0/16]"])
    conf = ganesha.render(loaded.nas_servers[3], port=2049, clients=loaded.nas_servers[3].nfs
                          .allowed_clients["kubernetes"])
    assert "Squash = All_Squash;" in conf and "Anonymous_Uid = 1000;" in conf
    assert "Clients = 10.1.0.0/16;" in conf
