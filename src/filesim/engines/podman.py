"""The podman engine: the podman target's pods on this machine's host network (kube play)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from filesim import PROJECT_ROOT, image, ports
from filesim.engines.base import (
    Engine,
    EngineError,
    NasStatus,
    Progress,
    SharePaths,
    prepare_share,
    request_argv,
    seed_line,
    stalled_why,
)
from filesim.manifests.props import (
    EMPTY_DIRS,
    EXPORT_DIR,
    NODE_ROOT,
    STATE_DIR,
    WINDOWS_ROOT_DIR,
    ganesha_config_name,
    volume_name,
)
from filesim.model import Values
from filesim.nas import faults
from filesim.paths import inside
from filesim.quantity import to_bytes
from filesim.run import COMMAND_TIMEOUT, READ_TIMEOUT, CommandError, Runner
from filesim.sync.status import CONTAINERS, MARKER, SEED_FILE, degraded, health, read_status
from filesim.sync.versions import Versions, nfs_versions

CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
EXPORT_FS = PROJECT_ROOT / "scripts" / "export-fs.sh"
WORK_DIR = PROJECT_ROOT / ".filesim" / "podman"
PART_OF = "app.kubernetes.io/part-of=filesim"
#: Pod label holding the hash of the manifest a pod was started from (deploy skips it if equal;
#: podman 4.3 passes neither --annotation nor template annotations of a Deployment to its pod).
SPEC_LABEL = "filesim.dev/spec"
#: Status of a container podman thinks runs but whose processes were killed (see _mark_gone).
GONE = "gone"
#: `pod stop` waits 15 s for the agent's flush; longer means podman itself is stuck.
STOP_TIMEOUT = 60
RM_ATTEMPTS = 5
#: Programs the podman engine needs (each is also the Debian package's name).
TOOLS = ("podman", "runc", "catatonit", "debootstrap")


def podman_runner(runner: Runner) -> Runner:
    """``runner`` with podman pointed at filesim's containers.conf."""
    return Runner(dry_run=runner.dry_run, echo=runner.echo,
                  env={**runner.env, "CONTAINERS_CONF": str(CONTAINERS_CONF)})


def usable(runner: Runner) -> bool:
    """Whether podman is installed and answers."""
    if shutil.which("podman") is None:
        return False
    return podman_runner(runner)(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
                                 check=False, reads_only=True).returncode == 0


class PodmanEngine(Engine):
    """Runs each NAS as a podman pod sharing the host network, NFS on 127.0.0.1:<podman.port>."""

    name = "podman"
    poll_seconds = 0.25

    @property
    def image_ref(self) -> str:
        """Built on this machine: never pulled from ``image.pullFrom``."""
        return self.values.image.local_reference

    def __init__(self, values: Values, runner: Runner, data_root: Path):
        super().__init__(values, podman_runner(runner))
        self.data_root = data_root.resolve()
        # Per deployment: two deployments of one clone never share manifest files.
        self.manifests_dir = inside(WORK_DIR, values.namespace, "manifests")

    @property
    def lock_path(self) -> Path:
        """In the deployment's folder on this machine: every clone deploying it shares the lock."""
        return inside(Path(NODE_ROOT), self.values.namespace) / ".lock"

    # -- setup and deploy --------------------------------------------------------------------

    def setup(self, progress: Progress) -> None:
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            raise EngineError(f"missing: {', '.join(missing)}; run scripts/install.sh "
                              f"(or apt-get install -y {' '.join(missing)})")
        self.run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], reads_only=True)
        image.ensure(self.run, self.image_ref, progress=progress)
        for nas in self.servers():
            prepare_share(inside(self.data_root, nas.name), nas, self.run.dry_run, progress)

    def apply(self, progress: Progress) -> None:
        if any(nas.nfs.serves_v3 for nas in self.servers()):
            raise EngineError("NFSv3 needs rpcbind on port 111, which NAS pods sharing podman's host "
                              "network cannot each own; remove \"3\" from nfs.versions for podman")
        for nas in self.servers():
            if not (self.data_root / nas.name / MARKER).exists():
                raise EngineError(f"{self.data_root / nas.name} has no {MARKER}; "
                                  f"run `invoke setup --data-root {self.data_root}` first")
        if self.run(["podman", "image", "exists", self.image_ref], check=False,
                    reads_only=True).returncode != 0:
            raise EngineError(f"image {self.image_ref} is missing; run `invoke setup` first")
        from filesim.manifests import Target, synth  # cdk8s starts Node: only when deploying

        pods = self._pods()
        self._check_ports(pods)
        self.clear_faults(self.status(), progress)
        wanted = {nas.name for nas in self.servers()}
        for gone in sorted(self._pod_nas(pods) - wanted):
            retired = self.retire(gone, progress)
            if not retired.removed:
                raise EngineError(f"{gone} was left out of the values but its export is kept: "
                                  f"{retired.why}; fix that, or `invoke destroy --force`")
        files = synth(self.values, Target.PODMAN, self.manifests_dir, node_root=str(self.data_root))
        # The image's id too: a rebuilt image (same tag, a new agent) must reach running pods.
        image = self.run(["podman", "image", "inspect", "--format", "{{.Id}}", self.image_ref],
                         check=False, reads_only=True).stdout.strip()
        for nas, path in zip(self.servers(), files, strict=True):
            spec = _label_with_spec(path, image)
            pod = pods.get(self.pod_name(nas.name))
            if pod is not None and (pod.get("Labels") or {}).get(SPEC_LABEL) == spec \
                    and self._all_running(pod):
                if self._sees_its_folder(nas.name, pod):
                    progress(f"{nas.name}: unchanged")
                    continue
                # The data root was deleted and made again: the pod still sees the old one.
                progress(f"{nas.name}: its agent does not see the Windows folder: restarting it")
            self._export_fs("prepare", nas.name, str(to_bytes(nas.storage.size_limit)),
                            str(nas.storage.max_files))
            if pod is not None:
                self.remove_pod(nas.name, progress)  # the export stays: the new pod resumes it
            self._play(nas, path, progress)
            progress(f"{nas.name}: {'replaced' if pod is not None else 'created'}")

    def _play(self, nas: Any, path: Path, progress: Progress) -> None:
        """``kube play`` one NAS, showing its seed's progress; stop only if the seed stalls.

        ``kube play`` returns once the pod's init containers ended, the seed among them: it
        runs in the background while the seed's status (in its state folder, on this host)
        is watched. No progress for ``seed.stallSeconds`` ends the wait naming the NAS, the
        seed's phase and its last problem.
        """
        argv = ["podman", "kube", "play", "--network", "host", str(path)]
        if self.run.dry_run:
            self.run(argv)
            return
        with tempfile.TemporaryFile() as output:
            play = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT, env={**os.environ, **self.run.env})
            state, moved, last = Path(self._node_dir(nas.name), "state"), time.monotonic(), None
            started = time.time() - 5  # the seed's clock and ours may differ a little
            while play.poll() is None:
                time.sleep(0.5)
                seed = read_status(state, SEED_FILE) or {}
                if seed.get("started_at", 0) < started:
                    seed = {}  # an earlier pod's seed
                seen = (seed.get("phase"), seed.get("files_done"), seed.get("bytes_done"))
                if seen != last:
                    moved, last = time.monotonic(), seen
                    if seed.get("phase") == "copying":
                        progress(seed_line(nas.name, seed))
                elif time.monotonic() - moved > nas.seed_stall:
                    play.kill()
                    play.wait()
                    raise EngineError(f"{nas.name}: its seed made no progress for "
                                      f"{nas.seed_stall:.0f}s ({seed_line(nas.name, seed, short=True)}"
                                      f"{stalled_why(seed)}); see `invoke logs {nas.name} "
                                      "--container init`")
            output.seek(0)
            if play.returncode != 0:
                raise CommandError(argv, play.returncode, output.read().decode(errors="replace"))

    def _sees_its_folder(self, nas: str, pod: dict[str, Any]) -> bool:
        """Whether the pod's sync container sees this NAS folder's marker, as it is here.

        Read through the container's root (/proc/PID/root), at once: the agent's own status
        says so only after its next full pass, which with the watcher may be a minute away.
        """
        sync = next((c for c in pod.get("Containers", []) if c["Names"].endswith("-sync")), {})
        seen = Path(f"/proc/{sync.get('Pid', 0)}/root{WINDOWS_ROOT_DIR}/{nas}/{MARKER}")
        try:
            return seen.read_bytes() == (self.data_root / nas / MARKER).read_bytes()
        except OSError:
            return False

    @staticmethod
    def _all_running(pod: dict[str, Any]) -> bool:
        return all(c["Status"] == "running" for c in pod.get("Containers", [])
                   if not c["Names"].endswith(("-infra", "-seed")))

    def _pod_nas(self, pods: dict[str, dict[str, Any]]) -> set[str]:
        """The NAS names of this deployment's pods."""
        return {nas for name in pods if (nas := self.values.nas_of(name.removesuffix("-pod-0")))}

    def _node_dir(self, nas: str) -> str:
        return str(inside(Path(NODE_ROOT), self.values.namespace, self.values.object_name(nas)))

    def _export_fs(self, action: str, nas: str, *args: str) -> None:
        """Prepare, mount or remove one NAS's export filesystem and state on this host."""
        if os.geteuid() != 0 and not self.run.dry_run:
            raise EngineError("every export gets a filesystem of its own, and mounting one needs "
                              "root: run the task with sudo")
        self.run(["sh", EXPORT_FS, action, self._node_dir(nas), *args])

    # -- observing ---------------------------------------------------------------------------

    def _pods(self) -> dict[str, dict[str, Any]]:
        """The pods of this deployment by name (another deployment's have another label)."""
        result = self.run(["podman", "pod", "ps", "--filter", f"label={PART_OF}", "--filter",
                           f"label=filesim.dev/deployment={self.values.namespace}",
                           "--format", "json"], reads_only=True)
        pods = {pod["Name"]: pod for pod in json.loads(result.stdout or "[]")}
        self._mark_gone(pods)
        return pods

    def _mark_gone(self, pods: dict[str, dict[str, Any]]) -> None:
        """Give containers whose processes were killed (conmon too) the status ``gone``.

        podman keeps such containers "running" (or "stopping") for good and then waits
        forever on `pod stop`: a machine's processes killed under it (OOM killer, a
        sandbox restored without them) must not hang or fool deploy, status or destroy.
        """
        claimed = [c for pod in pods.values() for c in pod.get("Containers", [])
                   if c["Status"] in ("running", "stopping", "paused")]
        if not claimed:
            return
        result = self.run(["podman", "container", "inspect", "--format",
                           "{{.Id}} {{.State.ConmonPid}} {{.State.Pid}}", *(c["Id"] for c in claimed)],
                          check=False, reads_only=True)
        pids = {fields[0]: fields[1:] for line in result.stdout.splitlines()
                if len(fields := line.split()) == 3}
        for container in claimed:
            conmon, pid = pids.get(container["Id"], ("0", "0"))
            container["Pid"] = int(pid)
            if not _is_conmon(conmon):
                container["Status"] = GONE

    def _pod(self, nas: str) -> dict[str, Any] | None:
        """The NAS's pod as :meth:`_pods` lists it (killed containers marked), if it exists."""
        return self._pods().get(self.pod_name(nas))

    def _gone(self, nas: str) -> bool:
        """Whether the NAS's pod exists with processes killed under podman."""
        return _killed(self._pod(nas))

    def pod_name(self, nas: str) -> str:
        """Podman names a Deployment's pod ``<name>-pod-0``."""
        return f"{self.values.object_name(nas)}-pod-0"

    def _container(self, nas: str, container: str) -> str:
        return f"{self.pod_name(nas)}-{CONTAINERS[container]}"

    def _agent_status(self, nas: str) -> tuple[dict[str, Any], str]:
        state = Path(self._node_dir(nas), "state")
        status = read_status(state)
        ok, why = health(status)
        status = status or {}
        applied = faults.read(state, faults.APPLIED_FILE)  # here at once, not at the agent's beat
        status["fault"] = applied.to_json() if applied else None
        return status, ("" if ok else f"sync: {why}")

    def status(self) -> list[NasStatus]:
        pods = self._pods()
        owners = ports.listeners({nas.podman_port for nas in self.servers()})
        found = []
        for nas in self.servers():
            port = nas.podman_port
            item = NasStatus(name=nas.name, role=nas.role, mode=nas.sync.mode,
                             endpoint=f"nfs://127.0.0.1:{port}{EXPORT_DIR}")
            pod = pods.get(self.pod_name(nas.name))
            if pod is None:
                kept = Path(self._node_dir(nas.name), "export.img")
                item.problem = "not deployed" + (
                    f"; its export is kept ({kept.parent}): `invoke deploy` resumes it, "
                    "`invoke destroy` flushes it to Windows and removes it" if kept.exists() else "")
            else:
                states = {c["Names"].removeprefix(self.pod_name(nas.name) + "-"): c["Status"]
                          for c in pod.get("Containers", [])}
                item.running = all(states.get(c) == "running" for c in ("sync", "nfs"))
                item.agent, problem = self._agent_status(nas.name)
                if _killed(pod):
                    problem = "its processes were killed outside podman; `invoke deploy` restarts it"
                elif not item.running:
                    problem = "containers: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
                elif port not in owners:
                    problem = f"nothing listens on 127.0.0.1:{port} yet"
                elif not self._own_listener(pod, nas.name, owners[port]):
                    # Ready means this NAS's own server answers, not whatever holds its port.
                    problem = (f"port {port} is held by {ports.describe(owners[port])}, not by "
                               f"{nas.name}'s NFS server: stop it, or give {nas.name} another "
                               "podman.port")
                    item.stuck = True
                item.problem = problem or None
                item.ready = item.problem is None
                item.degraded = degraded(item.agent)
                item.read_fault()
            found.append(item)
        return found

    def _own_listener(self, pod: dict[str, Any], nas: str, owner: int) -> bool:
        """Whether ``owner`` (a listening pid) runs in this NAS pod's nfs container."""
        name = self._container(nas, "nfs")
        nfs = next((c for c in pod.get("Containers", []) if c["Names"] == name), None)
        return bool(nfs and nfs.get("Pid") and owner and ports.descends_from(owner, nfs["Pid"]))

    def _check_ports(self, pods: dict[str, dict[str, Any]]) -> None:
        """Before anything starts: every NAS's port is free, or held by that NAS's own server."""
        owners = ports.listeners({nas.podman_port for nas in self.servers()})
        for nas in self.servers():
            owner = owners.get(nas.podman_port)
            pod = pods.get(self.pod_name(nas.name))
            if owner is not None and not (pod and self._own_listener(pod, nas.name, owner)):
                raise EngineError(f"{nas.name}: port {nas.podman_port} is in use by "
                                  f"{ports.describe(owner)}; stop it, or give {nas.name} another "
                                  "podman.port (--set 'nasServers[" + nas.name + "].podman.port=N')")

    def logs(self, nas: str, container: str, follow: bool) -> None:
        self.server(nas)
        name = self._container(nas, container)
        if self.run(["podman", "container", "exists", name], check=False,
                    reads_only=True).returncode != 0:
            hint = ("podman removes the seed (init) container once it has run; its outcome shows in "
                    "the sync log" if container == "init" else f"is {nas} deployed? `invoke status`")
            raise EngineError(f"no container {name}: {hint}")
        self.run(["podman", "logs", *(["--follow"] if follow else []), name], capture=False,
                 reads_only=True)

    def clear_faults(self, states: list[NasStatus], progress: Progress) -> None:
        """End every fault: the requests are files of this host (a pod not running keeps none)."""
        for state in states:
            folder = Path(self._node_dir(state.name), "state")
            asked = faults.read(folder)
            if asked is None:
                continue
            if self.run.dry_run:
                print(f"# remove {folder / faults.FAULT_FILE} (fault {asked.label})")
                continue
            faults.write(folder, None)
            progress(f"{state.name}: fault {asked.label} cleared")

    def exec(self, nas: str, container: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self.server(nas)
        return self.run(["podman", "exec", self._container(nas, container), *argv], check=False,
                        reads_only=True, timeout=COMMAND_TIMEOUT)

    def paths(self, nas: str) -> SharePaths:
        folder = str(self.windows_folder(nas))
        return SharePaths(windows=folder, node=folder, container=f"{WINDOWS_ROOT_DIR}/{nas}")

    def windows_folder(self, nas: str) -> Path:
        self.server(nas)
        return inside(self.data_root, nas)

    # -- NFS client: libnfs in the NAS image, on the host network ----------------------------

    def _url(self, nas: str, name: str) -> str:
        port = self.server(nas).podman_port
        return f"nfs://127.0.0.1{EXPORT_DIR}/{name}?version=4&nfsport={port}"

    def _client(self, argv: list[str], *, volume: Path | None = None, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
        mount = ["-v", f"{volume}:/io"] if volume else []
        return self.run(["podman", "run", "--rm", "--network", "host", *mount, self.image_ref, *argv],
                        check=check, reads_only=True)

    def nfs_write(self, nas: str, name: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "data").write_bytes(data)
            try:
                self._client(["nfs-cp", "/io/data", self._url(nas, name)], volume=Path(tmp))
            except CommandError as exc:
                raise EngineError(f"NFS write to {nas} failed: {exc}") from None

    def nfs_read(self, nas: str, name: str) -> bytes | None:
        with tempfile.TemporaryDirectory() as tmp:
            result = self._client(["nfs-cp", self._url(nas, name), "/io/data"], volume=Path(tmp),
                                  check=False)
            if result.returncode != 0:
                return None
            return (Path(tmp) / "data").read_bytes()

    def nfs_remove(self, nas: str, name: str) -> None:
        self._client(["nfs-rm", self._url(nas, name)], check=False)

    # -- teardown (Engine.retire's primitives) ----------------------------------------------

    def deployed_names(self) -> list[str]:
        names = [nas.name for nas in self.servers()]
        found = self._pod_nas(self._pods())
        root = Path(NODE_ROOT, self.values.namespace)
        if root.is_dir():
            found |= {nas for p in root.iterdir() if p.is_dir() and (nas := self.values.nas_of(p.name))}
        return names + sorted(found - set(names))

    def exists(self, nas: str) -> bool:
        return self._pod(nas) is not None or Path(self._node_dir(nas)).exists()

    def stop_nfs(self, nas: str) -> None:
        if self._gone(nas):
            return
        self.run(["podman", "stop", "--time", "10", self._container(nas, "nfs")], check=False)

    def agent_request(self, nas: str, kind: str, timeout: float, **details: Any
                      ) -> dict[str, Any] | None:
        if self._gone(nas):
            return None
        result = self.run(["podman", "exec", self._container(nas, "sync"),
                           *request_argv(kind, timeout, **details)],
                          check=False, reads_only=True, timeout=timeout + READ_TIMEOUT)
        try:
            return json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None

    def remove_pod(self, nas: str, progress: Progress) -> None:
        listed = self._pod(nas)
        if listed is None:
            return
        pod = self.pod_name(nas)
        # Graceful stop first: `kube down` kills at once and the agent could not flush. Where
        # that fails, the export stays and retire() flushes it once before anything removes it.
        if _killed(listed):
            progress(f"{nas}: its processes were killed outside podman; removing the pod")
        elif not self._stop_gracefully(pod):
            progress(f"{nas}: the pod did not stop; removing it by force")
        # With killed processes podman removes a pod's containers over a few tries (each finds
        # the next one in an "improper state"); the last error is the one worth reporting.
        for attempt in range(RM_ATTEMPTS):
            try:
                self.run(["podman", "pod", "rm", "--force", "--time", "0", pod])
                return
            except CommandError:
                if attempt == RM_ATTEMPTS - 1:
                    raise
                time.sleep(1)

    def _stop_gracefully(self, pod: str) -> bool:
        """``pod stop`` with the agent's flush time; False if it failed or podman got stuck."""
        try:
            return self.run(["podman", "pod", "stop", "--time", "15", pod], check=False,
                            timeout=STOP_TIMEOUT).returncode == 0
        except CommandError:  # stuck past the timeout
            return False

    def final_status(self, nas: str) -> dict[str, Any] | None:
        return read_status(Path(self._node_dir(nas), "state"))

    def nfs_versions(self, nas: str, path: str = "") -> list[dict[str, Any]]:
        """Read on this machine, where the state folder is (also while the NAS is down)."""
        self.server(nas)
        kept = Versions(nfs_versions(Path(self._node_dir(nas), "state")))
        return [vars(v) for v in kept.within(path, folded=False)]

    def one_shot(self, nas: str, *flags: str) -> tuple[int, str]:
        folder = self._node_dir(nas)
        if not Path(folder, "export.img").is_file():
            return 0, '{"unsynced": []}'  # nothing was ever exported
        self._export_fs("mount", nas)  # unmounted since a reboot: an empty folder is not the export
        result = self.run(["podman", "run", "--rm", "--network", "none",
                           "-v", f"{self.data_root}:{WINDOWS_ROOT_DIR}",
                           "-v", f"{folder}/export:{EXPORT_DIR}", "-v", f"{folder}/state:{STATE_DIR}",
                           self.image_ref, *self._sync_args(nas), *flags], check=False)
        return result.returncode, result.stdout or ""

    def _sync_args(self, nas: str) -> list[str]:
        """The agent's command line for a NAS (a removed one: the mode its agent last ran)."""
        from filesim.manifests.props import NasProps, Target

        known = self.values.server(nas)
        if known is not None:
            return NasProps(known, Target.PODMAN, self.values.namespace, self.values.image,
                            str(self.data_root), self.values.windows_root,
                            self.values.name_prefix).sync_args(once=False)
        mode = (self.final_status(nas) or {}).get("mode", "bidirectional")
        return ["filesim-sync", "--nfs", EXPORT_DIR, "--windows", f"{WINDOWS_ROOT_DIR}/{nas}",
                "--state", STATE_DIR, "--mode", mode, "--log-format", "json"]

    def remove_export(self, nas: str) -> None:
        volumes = self.run(["podman", "volume", "ls", "--format", "{{.Name}}"],
                           reads_only=True).stdout.split()
        ours = [v for v in volumes if v in _volume_names(self.values.object_name(nas))]
        if ours:
            self.run(["podman", "volume", "rm", "--force", *ours])
        self._export_fs("remove", nas)


def _volume_names(nas: str) -> set[str]:
    """Volumes the podman target creates for one NAS (emptyDirs and the ganesha ConfigMap)."""
    return {volume_name(nas, suffix) for suffix in EMPTY_DIRS} | {ganesha_config_name(nas)}


def _label_with_spec(path: Path, image_id: str) -> str:
    """Label the pod template of a NAS's manifest with the hash of it and its image; return it."""
    import yaml

    text = path.read_text()
    spec = hashlib.sha256(f"{image_id}\n{text}".encode()).hexdigest()[:16]
    objects = list(yaml.safe_load_all(text))
    for obj in objects:
        if obj["kind"] == "Deployment":
            obj["spec"]["template"]["metadata"]["labels"][SPEC_LABEL] = spec
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return spec


def _killed(pod: dict[str, Any] | None) -> bool:
    """Whether a listed pod has a container whose processes were killed under podman."""
    return pod is not None and any(c["Status"] == GONE for c in pod.get("Containers", []))


def _is_conmon(pid: str) -> bool:
    """Whether ``pid`` is a live conmon (the monitor podman starts with every container)."""
    try:
        name, _, rest = Path(f"/proc/{int(pid)}/stat").read_text().partition(") ")
    except (OSError, ValueError):
        return False
    return name.endswith("(conmon") and not rest.startswith(("Z", "X"))  # a zombie is dead



