"""A fake Kubernetes API server over real HTTP: no cluster can run on our machines.

The official client (and so engines/kubernetes.py) talks to it as to a cluster — discovery,
create, get, list, server-side apply, delete, pod logs, and exec over the websocket channel
protocol — so every task can run against it. What a cluster would do on its own is played by
small hooks a test may replace: ``pod_status`` (what the kubelet reports of a NAS pod),
``node`` (a one-shot pod's command on the node) and ``exec`` (a command in a container).

Each behaviour follows the API's documentation:

- Errors are ``Status`` objects with ``reason``, ``code`` and ``details`` (API concepts,
  "Response status kind"): 404 ``NotFound`` for a missing object *and* for an object in a
  namespace that does not exist; 409 ``AlreadyExists`` for a create of an existing name;
  409 ``Conflict`` for an apply that would take a field another manager owns, without force.
- Server-side apply (reference/using-api/server-side-apply): each field manager owns the fields
  of the configuration it last applied; the object is every manager's configuration merged
  (maps merge, lists are atomic here), so a field a manager stops applying is removed unless
  another manager applies it too.
- Label selectors, equality-based (``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, comma = and)
  (concepts/overview/working-with-objects/labels).
- Admission as the API server's own plugins answer: 403 ``Forbidden`` "violates PodSecurity"
  for a pod with hostPath or privileged containers in a namespace enforcing ``baseline`` or
  ``restricted`` (Pod Security admission); 403 for a change of a bound, statically provisioned
  claim's request (PersistentVolumeClaimResize: "only dynamically provisioned pvc can be
  resized"); 422 ``Invalid`` for a Service whose clusterIP is outside the service range.
- A Deployment gets one pod (named ``<deployment>-<hash>``) carrying its template's labels,
  replaced when the template changes and deleted with it (garbage collection).
- exec: subprotocol ``v4.channel.k8s.io``; channel 1 stdout, 2 stderr, 3 the final status
  (``Success``, or ``Failure``/``NonZeroExitCode`` with the exit code in ``causes[0].message``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

#: (group, version, kind, plural, namespaced)
RESOURCES = [
    ("", "v1", "Namespace", "namespaces", False),
    ("", "v1", "Node", "nodes", False),
    ("", "v1", "Pod", "pods", True),
    ("", "v1", "Service", "services", True),
    ("", "v1", "ConfigMap", "configmaps", True),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True),
    ("", "v1", "PersistentVolume", "persistentvolumes", False),
    ("apps", "v1", "Deployment", "deployments", True),
    ("networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", False),
]
BY_PLURAL = {(g, v, plural): (kind, namespaced) for g, v, kind, plural, namespaced in RESOURCES}
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, 1.3


class ApiError(Exception):
    """An API error answered as a Status object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def body(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "details": self.details,
                "code": self.code}


def not_found(plural: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{plural} "{name}" not found', {"name": name, "kind": plural})


def selects(selector: str, labels: dict[str, str]) -> bool:
    """Whether an equality-based label selector selects ``labels``."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def leaves(config: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """The fields a configuration sets: maps are walked, anything else (lists too) is a leaf."""
    if isinstance(config, dict) and config:
        found: dict[tuple[str, ...], Any] = {}
        for key, value in config.items():
            found.update(leaves(value, (*prefix, key)))
        return found
    return {prefix: config}


def merge(into: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


class Stored:
    """One object: every manager's applied configuration, in the order they last applied."""

    def __init__(self, kind: str, api_version: str):
        self.kind, self.api_version = kind, api_version
        self.configs: dict[str, dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.uid = str(uuid.uuid4())
        self.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.version = 1

    def object(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for config in self.configs.values():
            merge(merged, config)
        merged.update(apiVersion=self.api_version, kind=self.kind)
        meta = merged.setdefault("metadata", {})
        meta.update(uid=self.uid, resourceVersion=str(self.version), creationTimestamp=self.created,
                    managedFields=[{"manager": m, "operation": "Apply" if m != "create" else "Update"}
                                   for m in self.configs])
        if self.status:
            merged["status"] = copy.deepcopy(self.status)
        return merged

    def apply(self, manager: str, config: dict[str, Any], force: bool) -> None:
        config = copy.deepcopy(config)
        config.pop("status", None)
        wanted = leaves(config)
        if not force:
            for other, theirs in self.configs.items():
                if other == manager:
                    continue
                taken = [p for p, v in leaves(theirs).items() if p in wanted and wanted[p] != v]
                if taken:
                    raise ApiError(409, "Conflict", f"Apply failed with {len(taken)} conflict: "
                                   f"conflict with \"{other}\": .{'.'.join(taken[0])}",
                                   {"causes": [{"reason": "FieldManagerConflict",
                                                "field": "." + ".".join(p)} for p in taken]})
        else:  # forced: the fields change owner (the other managers no longer set them)
            for other, theirs in self.configs.items():
                if other != manager:
                    self.configs[other] = _without(theirs, wanted)
        self.configs.pop(manager, None)
        self.configs[manager] = config
        self.version += 1


def _without(config: dict[str, Any], fields: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for path, value in leaves(config).items():
        if path in fields or not path:
            continue
        node = kept
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return kept


class FakeCluster:
    """The API server's state, and the hooks that play the kubelet and the node."""

    def __init__(self, *, version: tuple[int, int] = (1, 33), nodes: int = 1,
                 service_range: str = "10.96.0.0/12", service_cidrs: bool = True):
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str], Stored] = {}  # (plural, namespace, name)
        self.version = version
        self.service_range = ipaddress.ip_network(service_range)
        self.logs: dict[str, str] = {}  # pod name → its log
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.exec_calls: list[tuple[str, str, list[str]]] = []
        self.node_calls: list[list[str]] = []
        #: What the kubelet reports of a Deployment's pod (default: running and ready).
        self.pod_status: Callable[[dict[str, Any]], dict[str, Any]] = running_and_ready
        #: A one-shot pod's command on the node: (exit code, log).
        self.node: Callable[[list[str]], tuple[int, str]] = lambda argv: (0, "")
        #: A command in a container: (exit code, stdout, stderr).
        self.exec: Callable[[str, str, list[str]], tuple[int, str, str]] = \
            lambda pod, container, argv: (127, "", f"{argv[0]}: not found")
        first = str(next(self.service_range.hosts()))
        self.put("v1", "Namespace", "", "default", {"metadata": {"name": "default"}})
        self.put("v1", "Service", "default", "kubernetes",
                 {"metadata": {"name": "kubernetes", "namespace": "default"},
                  "spec": {"clusterIP": first, "ports": [{"port": 443}]}})
        for n in range(nodes):
            self.put("v1", "Node", "", f"node-{n}", {"metadata": {"name": f"node-{n}"}})
        if service_cidrs and version >= (1, 33):
            self.put("networking.k8s.io/v1", "ServiceCIDR", "", "kubernetes",
                     {"metadata": {"name": "kubernetes"}, "spec": {"cidrs": [service_range]}})

    # -- direct access for tests ----------------------------------------------------------

    def put(self, api_version: str, kind: str, namespace: str, name: str, body: dict[str, Any],
            manager: str = "create") -> Stored:
        plural = next(p for _, _, k, p, _ in RESOURCES if k == kind)
        with self.lock:
            stored = self.objects.get((plural, namespace, name)) or Stored(kind, api_version)
            stored.apply(manager, body, force=True)
            self.objects[(plural, namespace, name)] = stored
            return stored

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            stored = self.objects.get((plural, namespace, name))
            return stored.object() if stored else None

    def names(self, plural: str, namespace: str = "") -> list[str]:
        with self.lock:
            return sorted(n for (p, ns, n) in self.objects if p == plural and ns == namespace)

    # -- the API --------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: bytes,
               content_type: str) -> tuple[int, Any]:
        self.requests.append((method, path))
        parts = [p for p in path.split("/") if p]
        if parts == ["version"]:
            major, minor = self.version
            return 200, {"major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.0",
                         "gitCommit": "0" * 40, "gitTreeState": "clean",
                         "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0",
                         "compiler": "gc", "platform": "linux/amd64"}
        if parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if parts == ["apis"]:
            groups = sorted({(g, v) for g, v, *_ in RESOURCES if g})
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                 "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}} for g, v in groups]}
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return 200, self._resource_list(group, version)
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else ""), (rest[2] if len(rest) > 2 else "")
        if (group, version, plural) not in BY_PLURAL:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        kind, namespaced = BY_PLURAL[(group, version, plural)]
        api_version = f"{group}/{version}" if group else version
        with self.lock:
            if namespaced and namespace and method in ("POST", "PATCH", "PUT") \
                    and ("namespaces", "", namespace) not in self.objects:
                raise not_found("namespaces", namespace)
            if method == "GET" and not name:
                return 200, self._list(plural, kind, api_version, namespaced, namespace,
                                       query.get("labelSelector", [""])[0])
            if method == "GET" and sub == "log":
                self._stored(plural, namespace, name)
                return 200, self.logs.get(name, "")
            if method == "GET":
                return 200, self._stored(plural, namespace, name).object()
            if method == "POST":
                config = json.loads(body)
                name = config["metadata"]["name"]
                if (plural, namespace, name) in self.objects:
                    raise ApiError(409, "AlreadyExists", f'{plural} "{name}" already exists',
                                   {"name": name, "kind": plural})
                return 201, self._write(plural, kind, api_version, namespace, name, config,
                                        "create", force=True)
            if method == "PATCH":
                if "apply-patch" not in content_type:
                    raise ApiError(415, "UnsupportedMediaType", f"{content_type} is not served here")
                config = yaml.safe_load(body)
                manager = query.get("fieldManager", [""])[0]
                if not manager:
                    raise ApiError(400, "BadRequest", "PATCH, fieldManager is required for apply "
                                   "requests")
                force = query.get("force", ["false"])[0] == "true"
                code = 200 if (plural, namespace, name) in self.objects else 201
                return code, self._write(plural, kind, api_version, namespace, name, config,
                                         manager, force)
            if method == "DELETE":
                stored = self._stored(plural, namespace, name)
                self._delete(plural, namespace, name)
                return 200, stored.object()
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {path}")

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources = []
        for g, v, kind, plural, namespaced in RESOURCES:
            if (g, v) == (group, version):
                verbs = ["create", "delete", "get", "list", "patch", "update"]
                resources.append({"name": plural, "singularName": kind.lower(),
                                  "namespaced": namespaced, "kind": kind, "verbs": verbs})
                if kind == "Pod":
                    resources += [{"name": "pods/log", "singularName": "", "namespaced": True,
                                   "kind": "Pod", "verbs": ["get"]},
                                  {"name": "pods/exec", "singularName": "", "namespaced": True,
                                   "kind": "PodExecOptions", "verbs": ["create", "get"]}]
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": resources}

    def _stored(self, plural: str, namespace: str, name: str) -> Stored:
        stored = self.objects.get((plural, namespace, name))
        if stored is None:
            raise not_found(plural, name)
        return stored

    def _list(self, plural: str, kind: str, api_version: str, namespaced: bool, namespace: str,
              selector: str) -> dict[str, Any]:
        items = []
        for (p, ns, _), stored in sorted(self.objects.items()):
            if p != plural or (namespaced and namespace and ns != namespace):
                continue
            obj = stored.object()
            if selects(selector, obj["metadata"].get("labels") or {}):
                items.append(obj)
        return {"kind": f"{kind}List", "apiVersion": api_version,
                "metadata": {"resourceVersion": "1"}, "items": items}

    def _write(self, plural: str, kind: str, api_version: str, namespace: str, name: str,
               config: dict[str, Any], manager: str, force: bool) -> dict[str, Any]:
        stored = self.objects.get((plural, namespace, name))
        before = stored.object() if stored else None
        trial = copy.deepcopy(stored) if stored else Stored(kind, api_version)
        config = merge(copy.deepcopy(config), {"metadata": {"name": name}})
        if namespace:
            config["metadata"]["namespace"] = namespace
        trial.apply(manager, config, force)
        if plural == "pods" and not trial.status:
            trial.status = {"phase": "Pending"}  # what a new pod reports until the kubelet runs it
        self._admit(plural, namespace, name, before, trial.object())
        self.objects[(plural, namespace, name)] = trial
        self._react(plural, namespace, name, trial)
        return trial.object()

    def _admit(self, plural: str, namespace: str, name: str, before: dict[str, Any] | None,
               after: dict[str, Any]) -> None:
        """The API server's admission and validation, for what filesim's objects can meet."""
        if plural == "pods":
            labels = self.objects[("namespaces", "", namespace)].object()["metadata"].get("labels") or {}
            level = labels.get("pod-security.kubernetes.io/enforce", "privileged")
            spec = after.get("spec", {})
            broken = [f'hostPath volumes (volume "{v["name"]}")' for v in spec.get("volumes", [])
                      if "hostPath" in v]
            broken += [f'privileged (container "{c["name"]}" must not set '
                       f"securityContext.privileged=true)" for c in spec.get("containers", [])
                       if (c.get("securityContext") or {}).get("privileged")]
            if spec.get("hostPID"):
                broken.append("host namespaces (hostPID=true)")
            if level in ("baseline", "restricted") and broken:
                raise ApiError(403, "Forbidden", f'pods "{name}" is forbidden: violates PodSecurity '
                               f'"{level}:latest": {", ".join(broken)}')
        if plural == "services":
            ip = after.get("spec", {}).get("clusterIP")
            if ip and ip != "None" and ipaddress.ip_address(ip) not in self.service_range:
                raise ApiError(422, "Invalid", f'Service "{name}" is invalid: spec.clusterIPs: '
                               f'Invalid value: []string{{"{ip}"}}: failed to allocate IP {ip}: '
                               f"the provided network does not match the current range",
                               {"name": name, "kind": "Service", "causes": [
                                   {"reason": "FieldValueInvalid", "field": "spec.clusterIPs"}]})
        if plural == "persistentvolumeclaims" and before is not None:
            old = before.get("spec", {}).get("resources")
            new = after.get("spec", {}).get("resources")
            if old != new and before.get("spec", {}).get("storageClassName", None) == "":
                raise ApiError(403, "Forbidden", f'persistentvolumeclaims "{name}" is forbidden: '
                               f"only dynamically provisioned pvc can be resized and the "
                               f"storageclass that provisions the pvc must support resize")

    def _react(self, plural: str, namespace: str, name: str, stored: Stored) -> None:
        """What the cluster's controllers and the kubelet do with a written object."""
        obj = stored.object()
        if plural == "deployments":
            template = obj["spec"]["template"]
            digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:5]
            pod_name = f"{name}-{digest}"
            for other in self.names("pods", namespace):
                owner = self.get("pods", namespace, other)["metadata"].get("ownerReferences", [])
                if other != pod_name and any(o.get("name") == name for o in owner):
                    self._delete("pods", namespace, other)
            if ("pods", namespace, pod_name) not in self.objects:
                pod = {"metadata": {"name": pod_name, "namespace": namespace,
                                    "labels": template["metadata"].get("labels", {}),
                                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                         "name": name, "uid": stored.uid}]},
                       "spec": template["spec"]}
                created = self.put("v1", "Pod", namespace, pod_name, pod, manager="kube-controller")
                created.status = self.pod_status(created.object())
        elif plural == "pods" and obj["spec"].get("restartPolicy") == "Never":
            container = obj["spec"]["containers"][0]
            argv = [*container.get("command", []), *container.get("args", [])]
            if argv[:2] == ["nsenter", "--target"]:
                argv = argv[argv.index("--") + 1:]
            self.node_calls.append(argv)
            code, log = self.node(argv)
            self.logs[name] = log
            stored.status = {"phase": "Succeeded" if code == 0 else "Failed"}

    def _delete(self, plural: str, namespace: str, name: str) -> None:
        self.objects.pop((plural, namespace, name), None)
        if plural == "deployments":
            for other in self.names("pods", namespace):
                owner = self.get("pods", namespace, other)["metadata"].get("ownerReferences", [])
                if any(o.get("name") == name for o in owner):
                    self.objects.pop(("pods", namespace, other), None)

    def set_pod_status(self, namespace: str, pod: str, status: dict[str, Any]) -> None:
        with self.lock:
            self.objects[("pods", namespace, pod)].status = status


def running_and_ready(pod: dict[str, Any]) -> dict[str, Any]:
    """What the kubelet reports of a pod whose containers all started and are ready."""
    spec = pod["spec"]

    def started(container: dict[str, Any]) -> dict[str, Any]:
        return {"name": container["name"], "image": container.get("image", ""), "imageID": "",
                "ready": True, "restartCount": 0, "state": {"running": {}}}

    return {"phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"},
                           {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [started(c) for c in spec.get("initContainers", [])
                                      if c.get("restartPolicy") == "Always"],
            "containerStatuses": [started(c) for c in spec.get("containers", [])]}


class _Handler(BaseHTTPRequestHandler):
    cluster: FakeCluster
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK wait

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, code: int, payload: Any) -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self, method: str) -> None:
        url = urlparse(self.path)
        body = self._body()
        if url.path.endswith("/exec") and self.headers.get("Upgrade", "").lower() == "websocket":
            self._exec(url)
            return
        try:
            code, payload = self.cluster.handle(method, url.path, parse_qs(url.query), body,
                                                self.headers.get("Content-Type", ""))
        except ApiError as exc:
            code, payload = exc.code, exc.body()
        self._answer(code, payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _exec(self, url: Any) -> None:
        """A pod exec over the websocket channel protocol (v4), answered in one go."""
        parts = [p for p in url.path.split("/") if p]
        namespace, pod = parts[3], parts[5]
        query = parse_qs(url.query)
        argv, container = query.get("command", []), query.get("container", [""])[0]
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
        if self.cluster.get("pods", namespace, pod) is None:
            self._answer(404, not_found("pods", pod).body())
            return
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        self.cluster.exec_calls.append((pod, container, argv))
        code, out, err = self.cluster.exec(pod, container, argv)
        status: dict[str, Any] = {"metadata": {}, "status": "Success"}
        if code:
            status = {"metadata": {}, "status": "Failure", "message": f"command terminated with "
                      f"non-zero exit code: {code}", "reason": "NonZeroExitCode",
                      "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        for channel, data in ((1, out.encode()), (2, err.encode()), (3, json.dumps(status).encode())):
            if data:
                self.wfile.write(_frame(bytes([channel]) + data))
        self.wfile.write(b"\x88\x02\x03\xe8")  # close, 1000 (normal)
        self.wfile.flush()
        self.close_connection = True


def _frame(payload: bytes) -> bytes:
    """A binary websocket frame from the server (unmasked)."""
    size = len(payload)
    if size < 126:
        header = bytes([0x82, size])
    elif size < 1 << 16:
        header = bytes([0x82, 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x82, 127]) + size.to_bytes(8, "big")
    return header + payload


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # a client hanging up is no error


class FakeApiServer:
    """The fake served on 127.0.0.1 in a thread, with a kubeconfig naming it."""

    def __init__(self, cluster: FakeCluster, kubeconfig: Path, context: str = "fake"):
        handler = type("Handler", (_Handler,), {"cluster": cluster})
        self.cluster = cluster
        self.server = _Server(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.context = context
        self.kubeconfig = kubeconfig
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "fake"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}]}))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def use(self, monkeypatch: Any) -> None:
        """Make this server's kubeconfig the one the client reads (it reads KUBECONFIG at import)."""
        from kubernetes.config import kube_config

        monkeypatch.setenv("KUBECONFIG", str(self.kubeconfig))
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(self.kubeconfig))

    def close(self) -> None:
        """Stop serving; the client's discovery cache of this address goes too."""
        import tempfile

        self.server.shutdown()
        self.server.server_close()
        digest = hashlib.md5(self.url.encode(), usedforsecurity=False).hexdigest()
        Path(tempfile.gettempdir(), f"osrcp-{digest}.json").unlink(missing_ok=True)
