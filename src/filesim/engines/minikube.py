"""The minikube engine: a minikube profile with the Windows root mounted, driven through the API.

`setup` runs the minikube CLI (every command shown with --dry-run); everything else talks to the
cluster through the official `kubernetes` client, and every failure becomes one line naming the
likely fix.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filesim.engines.base import (
    Engine,
    EngineError,
    NasStatus,
    Progress,
    SharePaths,
    prepare_share,
)
from filesim.engines.podman import EXPORT_FS
from filesim.manifests.props import EXPORT_DIR, STATE_DIR, WINDOWS_ROOT_DIR, node_dir
from filesim.model import Values, is_windows_path, share_folder
from filesim.quantity import mebibytes, to_bytes
from filesim.run import Runner
from filesim.sync.status import CONTAINERS, STATUS_FILE, degraded

FIELD_MANAGER = "filesim"
PART_OF = "app.kubernetes.io/part-of=filesim"
MIN_MINIKUBE = (1, 33)
MIN_KUBERNETES = (1, 29)
#: Memory (MiB) the node keeps for Kubernetes itself besides the NAS pods.
SYSTEM_MEMORY = 1536
#: Where `invoke deploy` puts scripts/export-fs.sh on the node.
NODE_EXPORT_FS = "/tmp/filesim-export-fs.sh"
PRUNABLE = [("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ConfigMap"),
            ("v1", "PersistentVolumeClaim"), ("v1", "PersistentVolume")]


# -- pure helpers (tested without a cluster) ---------------------------------------------------

def version_tuple(text: str) -> tuple[int, ...]:
    """``v1.33.0`` / ``1.33`` → (1, 33, 0)."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def memory_needed(values: Values) -> int:
    """MiB the node needs: every NAS pod's memory limits plus what Kubernetes keeps."""
    total = SYSTEM_MEMORY
    for nas in values.servers:
        for resources in (nas.nfs.resources, nas.sidecar_resources):
            total += mebibytes(resources.limits.get("memory", "64Mi"))
    return total


def preflight(values: Values, *, which: Callable[[str], str | None] = shutil.which,
              runner: Runner | None = None, on_windows: bool = os.name == "nt") -> list[str]:
    """Every problem that would stop `minikube start`, one line each with its fix."""
    runner = runner or Runner()
    mk = values.minikube
    problems = []
    if which("minikube") is None:
        problems.append("minikube is not installed: install it (Windows: `winget install "
                        "Kubernetes.minikube`; others: https://minikube.sigs.k8s.io/docs/start/)")
    else:
        out = runner(["minikube", "version", "--short"], check=False, reads_only=True).stdout
        found = version_tuple(out or "0")
        if found[:2] < MIN_MINIKUBE:
            problems.append(f"minikube {out.strip() or 'of unknown version'} is too old: filesim needs "
                            f"v{MIN_MINIKUBE[0]}.{MIN_MINIKUBE[1]} or newer; upgrade minikube")
    if which("kubectl") is None:
        problems.append("kubectl is not installed: install it (Windows: `winget install "
                        "Kubernetes.kubectl`), e.g. to inspect the cluster by hand")
    else:
        out = runner(["kubectl", "version", "--client", "-o", "json"], check=False,
                     reads_only=True).stdout
        try:
            client = json.loads(out)["clientVersion"]
            found = (int(client["major"]), int(re.sub(r"\D", "", client["minor"])))
        except (ValueError, KeyError, TypeError):
            found = (0, 0)
        if found < MIN_KUBERNETES:
            problems.append(f"kubectl {found[0]}.{found[1]} is too old: use v1.29 or newer")
    if version_tuple(mk.kubernetes_version)[:2] < MIN_KUBERNETES:
        problems.append(f"minikube.kubernetesVersion {mk.kubernetes_version} is too old: the sync "
                        f"agent is a native sidecar (Kubernetes v1.29+); set it to v1.33.0")
    if mk.driver == "hyperv" and not on_windows:
        problems.append("minikube.driver hyperv needs Windows: on this machine set minikube.driver "
                        "to docker, kvm2 or qemu2")
    needed = memory_needed(values)
    if mk.memory < needed:
        problems.append(f"minikube.memory {mk.memory} MiB is too small for "
                        f"{len(values.servers)} NAS servers: set "
                        f"minikube.memory to at least {needed}")
    root = values.windows_root
    if is_windows_path(root) and not on_windows:
        problems.append(f"windowsRoot {root} is a Windows path but this machine is not Windows: set "
                        f"windowsRoot to a local folder, e.g. {Path.home() / 'simulator-data'}")
    elif Path(root).exists() and not os.access(root, os.W_OK):
        problems.append(f"windowsRoot {root} is not writable: fix its permissions or choose another "
                        f"folder with --set windowsRoot=...")
    return problems


def start_command(values: Values) -> list[str]:
    """`minikube start` for the profile, with the Windows root mounted at the node root."""
    mk = values.minikube
    return ["minikube", "start", "-p", mk.profile, f"--driver={mk.driver}",
            f"--memory={mk.memory}", f"--cpus={mk.cpus}",
            f"--kubernetes-version={mk.kubernetes_version}", "--mount",
            f"--mount-string={values.windows_root}:{values.node_root}"]


def image_build_command(values: Values) -> list[str]:
    """Build the NAS image inside minikube from images/nas/Containerfile."""
    return ["minikube", "-p", values.minikube.profile, "image", "build", "-t",
            values.image.reference, "-f", "images/nas/Containerfile", "."]


def explain(exc: BaseException, *, context: str, namespace: str) -> EngineError:
    """One line for a Kubernetes client failure, naming the likely fix."""
    from kubernetes.client.rest import ApiException
    from kubernetes.config.config_exception import ConfigException

    if isinstance(exc, ConfigException):
        return EngineError(f"no kube context {context!r} ({exc}): run `invoke setup --engine minikube`, "
                           f"which starts minikube profile {context}")
    if isinstance(exc, ApiException):
        detail = _api_message(exc)
        if exc.status == 401:
            return EngineError(f"the cluster refused the credentials of context {context!r}: run "
                               f"`minikube update-context -p {context}`")
        if exc.status == 403:
            return EngineError(f"permission denied by RBAC ({detail}): your user needs rights to "
                               f"manage Deployments, Services, ConfigMaps, PVCs and pods/exec in "
                               f"namespace {namespace!r}, and PersistentVolumes")
        return EngineError(f"Kubernetes API error {exc.status} {exc.reason}: {detail}")
    text = str(exc)
    if any(word in text for word in ("Connection refused", "Max retries", "timed out",
                                     "Name or service not known", "NewConnectionError")) \
            or isinstance(exc, (ConnectionError, OSError)):
        return EngineError(f"cannot reach the cluster of context {context!r}: is minikube running? "
                           f"`minikube start -p {context}` or `invoke setup --engine minikube`")
    return EngineError(f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}")


def _api_message(exc: Any) -> str:
    try:
        return json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(exc.reason)


def context_reachable(context: str, timeout: float = 2.0) -> bool:
    """Whether kubeconfig has ``context`` and its API server answers within ``timeout``."""
    try:
        from kubernetes import client, config

        api = config.new_client_from_config(context=context)
        client.VersionApi(api).get_code(_request_timeout=timeout)
        return True
    except Exception:
        return False


def diagnose(nas: str, pod: dict[str, Any], last_lines: Callable[[str], str]) -> str | None:
    """Why a NAS pod cannot become ready by waiting, as one line with the likely fix; else None.

    ``pod`` is the pod as JSON; ``last_lines(container)`` returns a container's last log lines.
    """
    status = pod.get("status", {})
    if status.get("reason") == "Evicted":
        return (f"{nas} was evicted ({status.get('message', '').strip()}): the export outgrew "
                f"storage.sizeLimit; raise it for {nas} in your values (files synced to Windows "
                f"are safe) and run `invoke deploy`")
    for state in [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]:
        waiting = state.get("state", {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"):
            return (f"{nas}: image {state.get('image')} cannot be pulled ({reason}): run `invoke setup "
                    f"--engine minikube`, which builds it inside minikube")
        if reason == "CrashLoopBackOff":
            tail = " | ".join(last_lines(state["name"]).strip().splitlines()[-3:])
            return f"{nas}: container {state['name']} keeps crashing; its last lines: {tail}"
        if reason in ("CreateContainerConfigError", "CreateContainerError"):
            return f"{nas}: container {state['name']} cannot start: {waiting.get('message', reason)}"
    for condition in status.get("conditions", []):
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"{nas} cannot be scheduled: {condition.get('message')}; give minikube more memory/CPUs"
    return None


# -- the engine --------------------------------------------------------------------------------

class MinikubeEngine(Engine):
    """NAS servers in a minikube profile; the Windows root is mounted at the node root (9p)."""

    name = "minikube"
    poll_seconds = 1.0

    def __init__(self, values: Values, runner: Runner):
        super().__init__(values, runner)
        self.context = values.minikube.profile
        self.namespace = values.namespace
        self._clients: dict[str, Any] = {}

    # setup ----------------------------------------------------------------------------------

    def setup(self, progress: Progress) -> None:
        problems = preflight(self.values, runner=self.run)
        if self.run.dry_run:
            for line in problems:
                print(f"# preflight: {line}")
        elif problems:
            raise EngineError("\n".join(problems))
        changed = False
        if self._profile_running():
            progress(f"minikube profile {self.context} is running")
        else:
            self.run(start_command(self.values), capture=False)
            changed = True
        root = self.values.windows_root
        for nas in self.servers():
            changed |= prepare_share(Path(share_folder(root, nas.name)), nas, self.run.dry_run,
                                     progress)
        if self._image_present():
            progress(f"image {self.image_ref} is present in minikube")
        else:
            self.run(image_build_command(self.values), capture=False)
            changed = True
        if not changed and not self.run.dry_run:
            progress("nothing to do: minikube is running, the folders and the image exist")

    def _profile_running(self) -> bool:
        if self.run.dry_run and shutil.which("minikube") is None:
            return False
        result = self.run(["minikube", "status", "-p", self.context, "-o", "json"], check=False,
                          reads_only=True)
        try:
            return json.loads(result.stdout).get("APIServer") == "Running"
        except (ValueError, AttributeError):
            return False

    def _image_present(self) -> bool:
        if self.run.dry_run and shutil.which("minikube") is None:
            return False
        result = self.run(["minikube", "-p", self.context, "image", "ls"], check=False,
                          reads_only=True)
        return self.image_ref in result.stdout

    # API access -----------------------------------------------------------------------------

    def _api(self, kind: str) -> Any:
        """A client of the profile's context: ``core``, ``dynamic`` or ``raw`` (the ApiClient)."""
        if kind not in self._clients:
            from kubernetes import client, config
            from kubernetes.dynamic import DynamicClient

            try:
                raw = self._clients.get("raw") or config.new_client_from_config(context=self.context)
                self._clients["raw"] = raw
                # DynamicClient reads the API's discovery at once: built only when asked for.
                self._clients[kind] = {"core": client.CoreV1Api, "dynamic": DynamicClient,
                                       "raw": lambda api: api}[kind](raw)
            except Exception as exc:
                raise self._explain(exc) from None
        return self._clients[kind]

    def _explain(self, exc: BaseException) -> EngineError:
        return explain(exc, context=self.context, namespace=self.namespace)

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EngineError:
            raise
        except Exception as exc:
            raise self._explain(exc) from None

    # deploy ---------------------------------------------------------------------------------

    def apply(self, progress: Progress) -> None:
        from filesim.manifests import Target, manifests  # cdk8s starts Node: only when deploying

        dynamic = self._api("dynamic")
        wanted = {nas.name for nas in self.servers()}
        for gone in sorted(set(self._pods()) - wanted):
            retired = self.retire(gone, progress)
            if not retired.removed:
                raise EngineError(f"{gone} was left out of the values but its export is kept: "
                                  f"{retired.why}; fix that, or `invoke destroy --force`")
        self._copy_export_fs()
        for nas in self.servers():
            self._export_fs("prepare", nas.name, str(to_bytes(nas.storage.size_limit)))
        applied: set[tuple[str, str]] = set()
        for manifest in manifests(self.values, Target.KUBERNETES):
            for obj in manifest.objects:
                meta = obj["metadata"]
                resource = self._call(dynamic.resources.get, api_version=obj["apiVersion"],
                                      kind=obj["kind"])
                self._call(dynamic.server_side_apply, resource, body=obj, name=meta["name"],
                           namespace=meta.get("namespace"), field_manager=FIELD_MANAGER,
                           force_conflicts=True)
                applied.add((obj["kind"], meta["name"]))
            progress(f"applied {manifest.filename}")
        self._prune(applied, progress)

    def _copy_export_fs(self) -> None:
        """Put scripts/export-fs.sh on the node (the VM has no Python)."""
        self.run(["minikube", "-p", self.context, "cp", str(EXPORT_FS), NODE_EXPORT_FS])

    def _export_fs(self, action: str, nas: str, *args: str) -> None:
        """Prepare or remove one NAS's export filesystem and state on the node."""
        self.run(["minikube", "-p", self.context, "ssh", "--", "sudo", "sh", NODE_EXPORT_FS, action,
                  self._node_dir(nas), *args])

    def _node_dir(self, nas: str) -> str:
        return node_dir(self.namespace, self.values.object_name(nas))

    def _prune(self, keep: set[tuple[str, str]], progress: Progress) -> None:
        """Delete filesim's objects that the values no longer describe (removed NAS servers)."""
        dynamic = self._api("dynamic")
        for api_version, kind in PRUNABLE:
            resource = self._call(dynamic.resources.get, api_version=api_version, kind=kind)
            namespace = None if kind == "PersistentVolume" else self.namespace
            found = self._call(dynamic.get, resource, namespace=namespace, label_selector=PART_OF)
            for item in found.items:
                if (kind, item.metadata.name) not in keep and (
                        kind != "PersistentVolume" or item.metadata.name.startswith(f"{self.namespace}-")):
                    self._call(dynamic.delete, resource, name=item.metadata.name, namespace=namespace)
                    progress(f"pruned {kind} {item.metadata.name}")

    def _pods(self) -> dict[str, dict[str, Any]]:
        core, raw = self._api("core"), self._api("raw")
        pods = self._call(core.list_namespaced_pod, self.namespace,
                          label_selector="app.kubernetes.io/component=nas")
        found: dict[str, dict[str, Any]] = {}
        for pod in pods.items:
            data = raw.sanitize_for_serialization(pod)
            nas = self.values.nas_of(data["metadata"]["labels"].get("app.kubernetes.io/instance", ""))
            if nas and not data["metadata"].get("deletionTimestamp"):
                found[nas] = data
        return found

    # observe --------------------------------------------------------------------------------

    def status(self) -> list[NasStatus]:
        pods = self._pods()
        result = []
        for nas in self.servers():
            item = NasStatus(name=nas.name, role=nas.role, mode=nas.sync.mode,
                             endpoint=f"nfs://{nas.service.cluster_ip}:{nas.nfs.port}{EXPORT_DIR}")
            pod = pods.get(nas.name)
            if pod is None:
                item.problem = "not deployed"
            else:
                conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
                item.running = pod["status"].get("phase") == "Running"
                item.ready = conditions.get("Ready") == "True"
                item.problem = diagnose(nas.name, pod, lambda c, p=pod: self._tail(p, c))
                item.stuck = item.problem is not None
                if item.running:
                    out = self._exec(pod["metadata"]["name"], "sync", ["cat", f"{STATE_DIR}/{STATUS_FILE}"])
                    try:
                        item.agent = json.loads(out.stdout)
                    except ValueError:
                        item.agent = {}
                    item.degraded = degraded(item.agent)
                if not item.ready and item.problem is None:
                    item.problem = f"pod {pod['status'].get('phase', 'Pending').lower()}, not ready yet"
            result.append(item)
        return result

    def _tail(self, pod: dict[str, Any], container: str, *, previous: bool = True) -> str:
        core = self._api("core")
        try:
            return core.read_namespaced_pod_log(pod["metadata"]["name"], self.namespace,
                                                container=container, tail_lines=5, previous=previous)
        except Exception:
            return "(no log)"

    def _pod_name(self, nas: str) -> str:
        self.server(nas)
        pod = self._pods().get(nas)
        if pod is None:
            raise EngineError(f"{nas} has no running pod: `invoke status --engine minikube`, "
                              f"then `invoke deploy --engine minikube`")
        return pod["metadata"]["name"]

    def logs(self, nas: str, container: str, follow: bool) -> None:
        core = self._api("core")
        response = self._call(core.read_namespaced_pod_log, self._pod_name(nas), self.namespace,
                              container=CONTAINERS[container], follow=follow, _preload_content=False)
        for chunk in response.stream():
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()

    def _exec(self, pod: str, container: str, argv: list[str], stdin: str | None = None
              ) -> subprocess.CompletedProcess[str]:
        from kubernetes.stream import stream

        core = self._api("core")
        resp = self._call(stream, core.connect_get_namespaced_pod_exec, pod, self.namespace,
                          container=CONTAINERS[container], command=argv, stdin=stdin is not None,
                          stdout=True, stderr=True, tty=False, _preload_content=False)
        if stdin is not None:
            resp.write_stdin(stdin)
            resp.close_channel(0)  # end of stdin
        resp.run_forever(timeout=60)
        out, err = resp.read_stdout() or "", resp.read_stderr() or ""
        code = resp.returncode if resp.returncode is not None else 1
        resp.close()
        return subprocess.CompletedProcess(argv, code, out, err)

    def exec(self, nas: str, container: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return self._exec(self._pod_name(nas), container, argv)

    def paths(self, nas: str) -> SharePaths:
        self.server(nas)
        return SharePaths(windows=share_folder(self.values.windows_root, nas),
                          node=f"{self.values.node_root.rstrip('/')}/{nas}",
                          container=f"{WINDOWS_ROOT_DIR}/{nas}")

    def windows_folder(self, nas: str) -> Path:
        root = self.values.windows_root
        if is_windows_path(root) and os.name != "nt":
            raise EngineError(f"the Windows folder {share_folder(root, nas)} is on the Windows machine: "
                              f"run this task from PowerShell there")
        return Path(share_folder(root, nas))

    # NFS client: libnfs inside the NAS pod, over the pod's loopback ----------------------------

    def _url(self, nas: str, name: str) -> str:
        return f"nfs://127.0.0.1{EXPORT_DIR}/{name}?version=4&nfsport={self.server(nas).nfs.port}"

    def nfs_write(self, nas: str, name: str, data: bytes) -> None:
        scratch = "/run/ganesha/.filesim-check"
        script = (f"base64 -d > {scratch} && nfs-cp {scratch} '{self._url(nas, name)}'; "
                  f"s=$?; rm -f {scratch}; exit $s")
        result = self._exec(self._pod_name(nas), "nfs", ["sh", "-c", script],
                            stdin=base64.b64encode(data).decode())
        if result.returncode != 0:
            raise EngineError(f"NFS write to {nas} failed: {(result.stderr or result.stdout).strip()}")

    def nfs_read(self, nas: str, name: str) -> bytes | None:
        scratch = "/run/ganesha/.filesim-read"
        script = (f"nfs-cp '{self._url(nas, name)}' {scratch} >/dev/null && base64 {scratch}; "
                  f"s=$?; rm -f {scratch}; exit $s")
        result = self._exec(self._pod_name(nas), "nfs", ["sh", "-c", script])
        return base64.b64decode(result.stdout) if result.returncode == 0 else None

    def nfs_remove(self, nas: str, name: str) -> None:
        self._exec(self._pod_name(nas), "nfs", ["nfs-rm", self._url(nas, name)])

    # teardown -------------------------------------------------------------------------------

    def destroy(self, progress: Progress, *, force: bool = False) -> None:
        self._api("dynamic")  # no cluster: one line naming the fix, before anything runs
        self._copy_export_fs()
        try:
            super().destroy(progress, force=force)
        finally:
            self._prune(set(), progress)  # what is left: the namespace's shared objects

    # Engine.retire's primitives -----------------------------------------------------------

    def deployed_names(self) -> list[str]:
        names = [nas.name for nas in self.servers()]
        return names + sorted(set(self._pods()) - set(names))

    def agent_request(self, nas: str, kind: str, timeout: float) -> dict[str, Any] | None:
        pod = self._pods().get(nas)
        if pod is None:
            return None
        result = self._exec(pod["metadata"]["name"], "sync", [
            "filesim-sync", "--state", STATE_DIR, "--request", kind, "--timeout", str(timeout)])
        try:
            return json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None

    def remove_pod(self, nas: str, progress: Progress) -> None:
        """Delete the NAS's objects; its pod stops (ganesha first, then the agent, which flushes)."""
        dynamic = self._api("dynamic")
        for api_version, kind in PRUNABLE:
            resource = self._call(dynamic.resources.get, api_version=api_version, kind=kind)
            cluster_wide = kind == "PersistentVolume"
            own = self.values.object_name(nas)
            name = f"{self.namespace}-{own}" if cluster_wide else own
            for candidate in ([name] if kind != "ConfigMap" else [own, f"{own}-ganesha"]):
                with contextlib.suppress(Exception):
                    dynamic.delete(resource, name=candidate,
                                   namespace=None if cluster_wide else self.namespace)
        deadline = time.monotonic() + 90
        while nas in self._pods() and time.monotonic() < deadline:
            time.sleep(self.poll_seconds)

    def final_status(self, nas: str) -> dict[str, Any] | None:
        result = self.run(["minikube", "-p", self.context, "ssh", "--", "sudo", "cat",
                           f"{self._node_dir(nas)}/state/{STATUS_FILE}"],
                          check=False, reads_only=True)
        try:
            return json.loads(result.stdout)
        except ValueError:
            return None

    def one_shot(self, nas: str, *flags: str) -> tuple[int, str]:
        """A pod of the same image runs the agent once with ``flags`` on the kept export."""
        from filesim.manifests.props import NasProps, Target

        known = self.values.server(nas)
        mode = known.sync.mode if known else (self.final_status(nas) or {}).get("mode", "bidirectional")
        args = NasProps(known, Target.KUBERNETES, self.namespace, self.values.image,
                        self.values.node_root, self.values.windows_root,
                        self.values.name_prefix).sync_args(once=False) \
            if known else ["filesim-sync", "--nfs", EXPORT_DIR, "--windows",
                           f"{WINDOWS_ROOT_DIR}/{nas}", "--state", STATE_DIR, "--mode", mode]
        folder = self._node_dir(nas)
        name = f"{self.values.object_name(nas)}-once"
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": self.namespace,
                             "labels": {"app.kubernetes.io/part-of": "filesim"}},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "once", "image": self.image_ref, "args": [*args, *flags],
                    "imagePullPolicy": self.values.image.pull_policy,
                    "volumeMounts": [{"name": "windows", "mountPath": WINDOWS_ROOT_DIR},
                                     {"name": "export", "mountPath": EXPORT_DIR},
                                     {"name": "state", "mountPath": STATE_DIR}]}],
                         "volumes": [{"name": "windows", "hostPath": {"path": self.values.node_root}},
                                     {"name": "export", "hostPath": {"path": f"{folder}/export",
                                                                     "type": "Directory"}},
                                     {"name": "state", "hostPath": {"path": f"{folder}/state",
                                                                    "type": "Directory"}}]}}
        dynamic, core = self._api("dynamic"), self._api("core")
        resource = self._call(dynamic.resources.get, api_version="v1", kind="Pod")
        self._call(dynamic.create, resource, body=body, namespace=self.namespace)
        phase = "Pending"
        deadline = time.monotonic() + 180
        while phase not in ("Succeeded", "Failed") and time.monotonic() < deadline:
            time.sleep(self.poll_seconds)
            phase = self._call(core.read_namespaced_pod, name, self.namespace).status.phase
        log = self._tail({"metadata": {"name": name}}, "once", previous=False)
        with contextlib.suppress(Exception):
            dynamic.delete(resource, name=name, namespace=self.namespace)
        return (0 if phase == "Succeeded" else 1), log or f"the one-shot agent is {phase}"

    def remove_export(self, nas: str) -> None:
        self._export_fs("remove", nas)
