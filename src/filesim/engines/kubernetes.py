"""The kubernetes engine: NAS servers on any cluster a kube context reaches, through its API.

Docker Desktop's and Rancher Desktop's Kubernetes, kind, k3d/k3s, a team cluster: everything
talks to the API with the official `kubernetes` client, and every failure becomes one line
naming the likely fix. The node keeps each export (a filesystem of its own, see
scripts/export-fs.sh) and must see the data root at ``nodeRoot``; the node is reached through
a privileged one-shot pod. minikube (engines/minikube.py) is this engine plus how to start a
profile and reach its node.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from filesim.engines.base import (
    Engine,
    EngineError,
    NasStatus,
    Progress,
    SharePaths,
    prepare_share,
    request_argv,
    seed_line,
)
from filesim.engines.podman import EXPORT_FS
from filesim.manifests.props import (
    EXPORT_DIR,
    NAMESPACE_LABELS,
    NODE_ROOT,
    STATE_DIR,
    WINDOWS_ROOT_DIR,
    node_dir,
)
from filesim.model import Values, is_windows_path, share_folder
from filesim.quantity import to_bytes
from filesim.run import Runner
from filesim.sync.status import CONTAINERS, SEED_FILE, STATUS_FILE, degraded

FIELD_MANAGER = "filesim"
PART_OF = "app.kubernetes.io/part-of=filesim"
MIN_KUBERNETES = (1, 29)
#: A pod not scheduled this long is stuck (a node just started is not ready for a moment).
SCHEDULING_GRACE = 30.0
PRUNABLE = [("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ConfigMap"),
            ("v1", "PersistentVolumeClaim"), ("v1", "PersistentVolume")]
#: How long a one-shot pod (a flush, a look at the node) may take.
ONE_SHOT_TIMEOUT = 180.0


class Fixes(NamedTuple):
    """How a user of one engine fixes what the cluster reports (one clause each)."""

    no_context: str
    unreachable: str
    credentials: str
    image: str
    capacity: str


# -- pure helpers (tested without a cluster) ---------------------------------------------------

def version_tuple(text: str) -> tuple[int, ...]:
    """``v1.33.0`` / ``1.33`` → (1, 33, 0)."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def explain(exc: BaseException, *, context: str, namespace: str, fixes: Fixes) -> EngineError:
    """One line for a Kubernetes client failure, naming the likely fix."""
    from kubernetes.client.rest import ApiException
    from kubernetes.config.config_exception import ConfigException

    if isinstance(exc, ConfigException):
        return EngineError(f"no kube context {context!r} ({exc}): {fixes.no_context}")
    if isinstance(exc, ApiException):
        detail = _api_message(exc)
        if exc.status == 401:
            return EngineError(f"the cluster refused the credentials of context {context!r}: "
                               f"{fixes.credentials}")
        if exc.status == 403 and "violates PodSecurity" in detail:
            return EngineError(f"the namespace's Pod Security level refuses NAS pods ({detail}): "
                               f"they need hostPath, DAC_READ_SEARCH and a privileged node pod; "
                               f"label it: `kubectl label namespace {namespace} "
                               f"pod-security.kubernetes.io/enforce=privileged --overwrite` (or ask "
                               f"the cluster's admin to)")
        if exc.status == 403:
            return EngineError(f"permission denied by RBAC ({detail}): your user needs rights to "
                               f"get, list, create, patch and delete Namespaces, Deployments, "
                               f"Services, ConfigMaps, PersistentVolumeClaims and Pods (privileged, "
                               f"hostPath), pods/exec and pods/log in namespace {namespace!r}, and "
                               f"PersistentVolumes and Nodes (get, list) cluster-wide")
        return EngineError(f"Kubernetes API error {exc.status} {exc.reason}: {detail}")
    text = str(exc)
    if any(word in text for word in ("Connection refused", "Max retries", "timed out",
                                     "Name or service not known", "NewConnectionError")) \
            or isinstance(exc, (ConnectionError, OSError)):
        return EngineError(f"cannot reach the cluster of context {context!r}: {fixes.unreachable}")
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


def diagnose(nas: str, pod: dict[str, Any], last_lines: Callable[[str], str], fixes: Fixes,
             now: float | None = None) -> str | None:
    """Why a NAS pod cannot become ready by waiting, as one line with the likely fix; else None.

    ``pod`` is the pod as JSON; ``last_lines(container)`` returns a container's last log lines.
    A pod not scheduled is stuck only once that lasted SCHEDULING_GRACE (a node just started
    is "not ready" for a moment).
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
            return f"{nas}: image {state.get('image')} cannot be pulled ({reason}): {fixes.image}"
        if reason == "CrashLoopBackOff":
            tail = " | ".join(last_lines(state["name"]).strip().splitlines()[-3:])
            return f"{nas}: container {state['name']} keeps crashing; its last lines: {tail}"
        if reason in ("CreateContainerConfigError", "CreateContainerError"):
            return f"{nas}: container {state['name']} cannot start: {waiting.get('message', reason)}"
    for condition in status.get("conditions", []):
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False" \
                and _lasted(condition.get("lastTransitionTime"), SCHEDULING_GRACE, now):
            return f"{nas} cannot be scheduled: {condition.get('message')}; {fixes.capacity}"
    return None


def _lasted(since: str | None, seconds: float, now: float | None) -> bool:
    """Whether a condition that changed at ``since`` (RFC 3339) has held ``seconds`` by ``now``."""
    from datetime import datetime

    if not since:
        return True
    try:
        changed = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return True
    return (now if now is not None else time.time()) - changed >= seconds


#: Service ranges clusters use by default, by the first address (the `kubernetes` Service) in them.
KNOWN_SERVICE_RANGES = ("10.96.0.0/12",   # kubeadm, minikube, kind, Docker Desktop
                        "10.43.0.0/16")   # k3s, k3d, Rancher Desktop


def service_range(kubernetes_ip: str, cidrs: list[str]) -> Any:
    """The cluster's service range (an ip_network).

    Its ServiceCIDRs (1.33+) if listed, else the known default range holding the
    ``kubernetes`` Service's address, else that address's /16.
    """
    address = ipaddress.ip_address(kubernetes_ip)
    for cidr in [*cidrs, *KNOWN_SERVICE_RANGES]:
        network = ipaddress.ip_network(cidr, strict=False)
        if address in network:
            return network
    return ipaddress.ip_network(f"{kubernetes_ip}/16", strict=False)


def outside_range(values: Values, network: Any) -> list[str]:
    """One line per NAS whose fixed ClusterIP the cluster cannot give (outside its range)."""
    return [f"nasServers[{nas.name}].service.clusterIP {nas.service.cluster_ip} is outside this "
            f"cluster's service range {network}: give every NAS an address inside it "
            f"(values/examples/k3d.yaml and rancher-desktop.yaml do, for 10.43.0.0/16)"
            for nas in values.servers
            if ipaddress.ip_address(nas.service.cluster_ip) not in network]


def cluster_kind(context: str) -> str:
    """What kind of cluster a context name suggests: how its image gets there."""
    for prefix, kind in (("docker-desktop", "docker-desktop"), ("rancher-desktop", "rancher-desktop"),
                         ("kind-", "kind"), ("k3d-", "k3d")):
        if context.startswith(prefix):
            return kind
    return "other"


def image_commands(kind: str, context: str, reference: str) -> list[list[str]]:
    """How `invoke setup` puts the NAS image where a cluster of ``kind`` finds it."""
    build = ["docker", "build", "-t", reference, "-f", "images/nas/Containerfile", "."]
    if kind == "docker-desktop":
        return [build]  # Docker Desktop's Kubernetes runs what docker has
    if kind == "rancher-desktop":
        return [["nerdctl", "--namespace", "k8s.io", *build[1:]]]
    if kind == "kind":
        return [build, ["kind", "load", "docker-image", reference, "--name", context.removeprefix("kind-")]]
    if kind == "k3d":
        return [build, ["k3d", "image", "import", reference, "-c", context.removeprefix("k3d-")]]
    return []


def kind_config(values: Values) -> str:
    """The kind cluster config that lets its node see the data root at ``nodeRoot``."""
    return (f"kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n  - role: control-plane\n"
            f"    extraMounts:\n      - hostPath: {values.windows_root}\n"
            f"        containerPath: {values.node_root}\n")


def current_context() -> str | None:
    """The kubeconfig's current context, if there is a kubeconfig."""
    try:
        from kubernetes import config

        _, active = config.list_kube_config_contexts()
        return active["name"] if active else None
    except Exception:
        return None


# -- the engine --------------------------------------------------------------------------------

class KubernetesEngine(Engine):
    """NAS servers on the cluster of a kube context; exports on its (single) node's disk."""

    name = "kubernetes"
    poll_seconds = 1.0
    #: Where exports and agent state live on the node (a folder its disk keeps).
    exports_root = NODE_ROOT

    def __init__(self, values: Values, runner: Runner, context: str | None = None):
        super().__init__(values, runner)
        self.context = (context or os.environ.get("FILESIM_KUBE_CONTEXT") or current_context()
                        or "(none)")
        self.namespace = values.namespace
        self._clients: dict[str, Any] = {}
        self._node_name: str | None = None

    @property
    def fixes(self) -> Fixes:
        """What this engine's user runs to fix what the cluster reports."""
        return Fixes(
            no_context="name one with --context (`kubectl config get-contexts` lists them) or "
                       "set FILESIM_KUBE_CONTEXT",
            unreachable=f"is the cluster running? `kubectl --context {self.context} get nodes`",
            credentials="refresh them (your cluster's login or get-credentials command)",
            image=f"run `invoke setup --engine kubernetes --context {self.context}`, which loads "
                  f"it into kind, k3d and Docker/Rancher Desktop, or set image.pullFrom to a "
                  f"registry the cluster pulls from",
            capacity="free memory/CPU on the node or lower the NAS resources in your values")

    # setup ----------------------------------------------------------------------------------

    def setup(self, progress: Progress) -> None:
        """Check the cluster, create the NAS folders, put the image where the cluster finds it."""
        kind = cluster_kind(self.context)
        if self.run.dry_run:
            print(f"# check: the cluster of context {self.context} answers and runs Kubernetes "
                  f">= v{MIN_KUBERNETES[0]}.{MIN_KUBERNETES[1]} on one node")
        else:
            self._check_cluster()
        for nas in self.servers():
            prepare_share(Path(share_folder(self.values.windows_root, nas.name)), nas,
                          self.run.dry_run, progress)
        if self.values.image.pull_from:
            progress(f"the cluster pulls {self.image_ref}: push the image there first "
                     f"(e.g. `podman push {self.values.image.local_reference} {self.image_ref}`)")
        else:
            commands = image_commands(kind, self.context, self.image_ref)
            if not commands:
                raise EngineError(f"context {self.context!r} is not kind, k3d or Docker/Rancher "
                                  f"Desktop, so filesim cannot load the image into it: set "
                                  f"image.pullFrom to a registry the cluster pulls from")
            for command in commands:
                self.run(command, capture=False)
        if kind == "kind":
            progress("kind's node sees the data root only if the cluster was made with this config "
                     f"(`kind create cluster --config FILE`):\n{kind_config(self.values)}")
        elif kind == "docker-desktop" and not self.values.node_root.startswith("/run/desktop/"):
            progress("Docker Desktop's node sees C:\\simulator-data at "
                     "/run/desktop/mnt/host/c/simulator-data: add values/examples/docker-desktop.yaml")

    def _check_cluster(self) -> None:
        from kubernetes import client

        info = self._call(client.VersionApi(self._api("raw")).get_code)
        found = version_tuple(f"{info.major}.{re.sub(r'[^0-9]', '', info.minor)}")
        if found[:2] < MIN_KUBERNETES:
            raise EngineError(f"the cluster runs Kubernetes {info.git_version}: the sync agent is a "
                              f"native sidecar and needs v1.29 or newer; upgrade the cluster")
        self._node()

    # API access -----------------------------------------------------------------------------

    def _api(self, kind: str) -> Any:
        """A client of the context: ``core``, ``dynamic`` or ``raw`` (the ApiClient)."""
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
        return explain(exc, context=self.context, namespace=self.namespace, fixes=self.fixes)

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
        problems = outside_range(self.values, self._service_range())
        if problems:
            raise EngineError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1
                                             else ""))
        wanted = {nas.name for nas in self.servers()}
        for gone in sorted(set(self._pods()) - wanted):
            retired = self.retire(gone, progress)
            if not retired.removed:
                raise EngineError(f"{gone} was left out of the values but its export is kept: "
                                  f"{retired.why}; fix that, or `invoke destroy --force`")
        self._prepare_node()
        for nas in self.servers():
            self._export_fs("prepare", nas.name, str(to_bytes(nas.storage.size_limit)),
                            str(nas.storage.max_files))
        applied: set[tuple[str, str]] = set()
        for manifest in manifests(self.values, Target.KUBERNETES, exports_root=self.exports_root):
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
        self.clear_faults(self.status(), progress)

    def _service_range(self) -> Any:
        """The cluster's service range (ServiceCIDR on 1.33+, else from the kubernetes Service)."""
        dynamic = self._api("dynamic")
        try:
            resource = dynamic.resources.get(api_version="v1", kind="Service")
            kubernetes_ip = dynamic.get(resource, name="kubernetes", namespace="default").spec.clusterIP
        except Exception:  # no right to read it: the apply itself will tell
            return ipaddress.ip_network("0.0.0.0/0")
        cidrs: list[str] = []
        with contextlib.suppress(Exception):  # ServiceCIDR exists from Kubernetes 1.33
            resource = dynamic.resources.get(api_version="networking.k8s.io/v1", kind="ServiceCIDR")
            cidrs = [c for item in dynamic.get(resource).items for c in item.spec.cidrs]
        return service_range(kubernetes_ip, cidrs)

    # the node: its disk keeps the exports -----------------------------------------------------

    def _prepare_node(self) -> None:
        """Make sure the node can be reached and sees the data root (before exports are made)."""
        code, output = self._on_node(["test", "-d", self.values.node_root])
        if code != 0:
            raise EngineError(f"the node does not see the data root at {self.values.node_root} "
                              f"({output.strip() or 'missing'}): set nodeRoot to where it is mounted "
                              f"(`invoke setup --engine kubernetes --dry-run` shows it per cluster)")

    def _export_fs(self, action: str, nas: str, *args: str) -> None:
        """Prepare, mount or remove one NAS's export filesystem and state on the node."""
        code, output = self._on_node(["env", f"FILESIM_NODE_ROOT={self.exports_root}", "sh", "-c",
                                      EXPORT_FS.read_text(), "export-fs", action,
                                      self._node_dir(nas), *args])
        if code != 0:
            raise EngineError(f"{nas}: export-fs.sh {action} failed on the node: "
                              f"{' | '.join(output.strip().splitlines()[-2:])}")

    def final_status(self, nas: str) -> dict[str, Any] | None:
        code, output = self._on_node(["cat", f"{self._node_dir(nas)}/state/{STATUS_FILE}"])
        try:
            return json.loads(output) if code == 0 else None
        except ValueError:
            return None

    def _node(self) -> str:
        """The node every NAS runs on: the cluster's only one."""
        if self._node_name is None:
            nodes = self._call(self._api("core").list_node).items
            if len(nodes) != 1:
                raise EngineError(f"the cluster of context {self.context!r} has {len(nodes)} nodes: "
                                  f"filesim keeps every export on a node's own disk and needs a "
                                  f"one-node cluster for now (docs/design.md, Engines)")
            self._node_name = nodes[0].metadata.name
        return self._node_name

    def _on_node(self, argv: list[str]) -> tuple[int, str]:
        """Run ``argv`` as root in the node's namespaces (a privileged one-shot pod)."""
        self._ensure_namespace()
        return self._run_pod({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"filesim-node-{uuid.uuid4().hex[:8]}", "namespace": self.namespace,
                         "labels": {"app.kubernetes.io/part-of": "filesim"}},
            "spec": {"restartPolicy": "Never", "hostPID": True, "nodeName": self._node(),
                     "tolerations": [{"operator": "Exists"}],
                     "containers": [{
                         "name": "node", "image": self.image_ref,
                         "imagePullPolicy": self.values.image.pull_policy,
                         "command": ["nsenter", "--target", "1", "--mount", "--uts", "--ipc",
                                     "--net", "--", *argv],
                         "securityContext": {"privileged": True}}]}})

    def _ensure_namespace(self) -> None:
        dynamic = self._api("dynamic")
        resource = self._call(dynamic.resources.get, api_version="v1", kind="Namespace")
        # Its labels too: applying without them under the same field manager would drop them.
        self._call(dynamic.server_side_apply, resource,
                   body={"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": self.namespace, "labels": NAMESPACE_LABELS}},
                   name=self.namespace, field_manager=FIELD_MANAGER, force_conflicts=True)

    def _run_pod(self, body: dict[str, Any]) -> tuple[int, str]:
        """Create a pod, wait until it ends, delete it: (0 if it succeeded, else 1; its log)."""
        dynamic, core = self._api("dynamic"), self._api("core")
        name, container = body["metadata"]["name"], body["spec"]["containers"][0]["name"]
        resource = self._call(dynamic.resources.get, api_version="v1", kind="Pod")
        self._call(dynamic.create, resource, body=body, namespace=self.namespace)
        deadline = time.monotonic() + ONE_SHOT_TIMEOUT
        try:
            while True:
                phase = self._call(core.read_namespaced_pod, name, self.namespace).status.phase
                if phase in ("Succeeded", "Failed") or time.monotonic() > deadline:
                    break
                time.sleep(self.poll_seconds)
            try:
                log = core.read_namespaced_pod_log(name, self.namespace, container=container)
            except Exception:
                log = ""
        finally:
            with contextlib.suppress(Exception):
                dynamic.delete(resource, name=name, namespace=self.namespace)
        return (0 if phase == "Succeeded" else 1), log or f"the one-shot pod is {phase}"

    def _node_dir(self, nas: str) -> str:
        return node_dir(self.namespace, self.values.object_name(nas), self.exports_root)

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
                item.problem = diagnose(nas.name, pod, lambda c, p=pod: self._tail(p, c), self.fixes)
                item.stuck = item.problem is not None
                # One exec that fails (a pod restarting under it) costs this NAS its detail,
                # never the whole status.
                if item.running:
                    item.agent = self._read_json(pod, "sync", STATUS_FILE) or {}
                    item.degraded = degraded(item.agent)
                    item.read_fault()
                if not item.ready and item.problem is None and _seeding(pod):
                    item.seed = self._read_json(pod, "init", SEED_FILE)
                    if item.seed is not None:
                        item.problem = seed_line(nas.name, item.seed)
                if not item.ready and item.problem is None:
                    item.problem = f"pod {pod['status'].get('phase', 'Pending').lower()}, not ready yet"
            result.append(item)
        return result

    def _read_json(self, pod: dict[str, Any], container: str, name: str) -> dict[str, Any] | None:
        """A JSON file of the agent's state folder, read in one of the pod's containers."""
        try:
            out = self._exec(pod["metadata"]["name"], container, ["cat", f"{STATE_DIR}/{name}"])
            found = json.loads(out.stdout)
        except Exception:  # the API, the websocket, a container gone meanwhile, no JSON yet
            return None
        return found if isinstance(found, dict) else None

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
            raise EngineError(f"{nas} has no running pod: `invoke status --engine {self.name}`, "
                              f"then `invoke deploy --engine {self.name}`")
        return pod["metadata"]["name"]

    def logs(self, nas: str, container: str, follow: bool) -> None:
        core = self._api("core")
        response = self._call(core.read_namespaced_pod_log, self._pod_name(nas), self.namespace,
                              container=CONTAINERS[container], follow=follow, _preload_content=False)
        for chunk in response.stream():
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()

    def _exec(self, pod: str, container: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        from kubernetes.stream import stream

        core = self._api("core")
        resp = self._call(stream, core.connect_get_namespaced_pod_exec, pod, self.namespace,
                          container=CONTAINERS[container], command=argv, stdin=False,
                          stdout=True, stderr=True, tty=False, _preload_content=False)
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
        # The data rides in the command (base64, small: check-sync's): closing stdin needs the
        # v5 exec protocol, which clusters before 1.30 do not speak.
        scratch = "/run/ganesha/.filesim-check"
        script = (f"printf %s '{base64.b64encode(data).decode()}' | base64 -d > {scratch} && "
                  f"nfs-cp {scratch} '{self._url(nas, name)}'; s=$?; rm -f {scratch}; exit $s")
        result = self._exec(self._pod_name(nas), "nfs", ["sh", "-c", script])
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
        self._prepare_node()
        try:
            super().destroy(progress, force=force)
        finally:
            self._prune(set(), progress)  # what is left: the namespace's shared objects

    # Engine.retire's primitives -----------------------------------------------------------

    def deployed_names(self) -> list[str]:
        names = [nas.name for nas in self.servers()]
        return names + sorted(set(self._pods()) - set(names))

    def agent_request(self, nas: str, kind: str, timeout: float, **details: Any
                      ) -> dict[str, Any] | None:
        pod = self._pods().get(nas)
        if pod is None:
            return None
        result = self._exec(pod["metadata"]["name"], "sync", request_argv(kind, timeout, **details))
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

    def one_shot(self, nas: str, *flags: str) -> tuple[int, str]:
        """A pod of the same image runs the agent once with ``flags`` on the kept export."""
        from filesim.manifests.props import NasProps, Target

        known = self.values.server(nas)
        mode = known.sync.mode if known else (self.final_status(nas) or {}).get("mode", "bidirectional")
        args = NasProps(known, Target.KUBERNETES, self.namespace, self.values.image,
                        self.values.node_root, self.values.windows_root,
                        self.values.name_prefix, self.exports_root).sync_args(once=False) \
            if known else ["filesim-sync", "--nfs", EXPORT_DIR, "--windows",
                           f"{WINDOWS_ROOT_DIR}/{nas}", "--state", STATE_DIR, "--mode", mode]
        folder = self._node_dir(nas)
        self._export_fs("mount", nas)  # unmounted since a reboot: an empty folder is not the export
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
        return self._run_pod(body)

    def remove_export(self, nas: str) -> None:
        self._export_fs("remove", nas)


def _seeding(pod: dict[str, Any]) -> bool:
    """Whether the pod's seed init container is running now."""
    return any(c.get("name") == CONTAINERS["init"] and "running" in (c.get("state") or {})
               for c in pod["status"].get("initContainerStatuses", []))
