"""Typed values: built once from the validated values dict, read everywhere else.

Every field mirrors a key of ``schemas/values.schema.json`` (the schema holds the defaults and
the documentation of each key); nothing downstream reads the raw dict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any


def is_windows_path(path: str) -> bool:
    """Whether ``path`` is written as a Windows path (drive letter or UNC)."""
    return bool(re.match(r"^([A-Za-z]:[\\/]|\\\\)", path))


def share_folder(root: str, nas: str) -> str:
    """A NAS's folder under the Windows root, in the root's own path flavour."""
    return str(PureWindowsPath(root) / nas if is_windows_path(root) else PurePosixPath(root) / nas)


@dataclass(frozen=True)
class Image:
    """A container image: ``repository:tag`` and when to pull it."""

    repository: str
    tag: str
    pull_policy: str
    #: A registry the cluster pulls the image from ("": the image is loaded into the cluster).
    pull_from: str = ""

    @property
    def reference(self) -> str:
        """``repository:tag``, under ``pull_from`` when the cluster pulls from a registry."""
        if self.pull_from:
            return f"{self.pull_from.rstrip('/')}/{self.repository.rsplit('/', 1)[-1]}:{self.tag}"
        return f"{self.repository}:{self.tag}"

    @property
    def local_reference(self) -> str:
        """The reference the image is built under on this machine."""
        return f"{self.repository}:{self.tag}"

    @classmethod
    def parse(cls, raw: Mapping[str, Any], base: Image | None = None) -> Image:
        """From an ``image`` values entry; keys it lacks come from ``base``."""
        def get(key: str, attr: str) -> Any:
            return raw[key] if key in raw else getattr(base, attr)

        return cls(get("repository", "repository"), get("tag", "tag"), get("pullPolicy", "pull_policy"),
                   get("pullFrom", "pull_from"))


@dataclass(frozen=True)
class Resources:
    """Kubernetes resource requests and limits of one container (quantities as text)."""

    requests: Mapping[str, str]
    limits: Mapping[str, str]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Resources:
        """From a ``resources`` values entry."""
        return cls({k: str(v) for k, v in raw.get("requests", {}).items()},
                   {k: str(v) for k, v in raw.get("limits", {}).items()})


@dataclass(frozen=True)
class SyncSettings:
    """How the sync agent of one NAS runs (``sync.*``)."""

    mode: str
    interval: float
    settle: float
    max_delete_fraction: float
    max_delete_rate: int
    max_delay: float
    windows_names: str
    hash_sweep_minutes: float
    hash_sweep_mb_per_second: float
    log_level: str


@dataclass(frozen=True)
class NfsSettings:
    """What the NFS server of one NAS serves (``nfs.*``)."""

    versions: tuple[str, ...]
    port: int
    mount_port: int
    #: Per engine target (``podman``, ``kubernetes``): the CIDRs allowed to mount.
    allowed_clients: Mapping[str, tuple[str, ...]]
    squash: str
    anonymous_uid: int
    anonymous_gid: int
    resources: Resources

    @property
    def serves_v3(self) -> bool:
        """NFSv3 needs rpcbind and the MOUNT protocol."""
        return "3" in self.versions

    @property
    def preferred_version(self) -> str:
        """The version PersistentVolumes mount (the first listed)."""
        return self.versions[0]


@dataclass(frozen=True)
class ServiceSettings:
    """The Kubernetes Service of one NAS."""

    type: str
    cluster_ip: str
    node_port: int | None


@dataclass(frozen=True)
class Storage:
    """Size limits of one NAS's volumes (Kubernetes quantities) and its export's inode count."""

    size_limit: str
    state_size_limit: str
    max_files: int


@dataclass(frozen=True)
class VersionsSettings:
    """How long and how much of what the agent replaces on the Windows side is kept."""

    days: float
    max_size: str


@dataclass(frozen=True)
class Nas:
    """One simulated NAS server."""

    name: str
    enabled: bool
    role: str
    access: str
    sync: SyncSettings
    versions: VersionsSettings
    sidecar_enabled: bool
    sidecar_image: Image
    sidecar_resources: Resources
    seed_resources: Resources
    #: Seconds without seed progress after which `invoke deploy` stops waiting.
    seed_stall: float
    nfs: NfsSettings
    service: ServiceSettings
    podman_port: int
    storage: Storage

    @property
    def read_only(self) -> bool:
        """NFS clients may only read the export."""
        return self.access == "ro"


@dataclass(frozen=True)
class Minikube:
    """The minikube profile `invoke setup --engine minikube` creates."""

    profile: str
    driver: str
    memory: int
    cpus: int
    kubernetes_version: str
    mount_port: int


@dataclass(frozen=True)
class Values:
    """The whole topology."""

    namespace: str
    name_prefix: str
    image: Image
    windows_root: str
    node_root: str
    minikube: Minikube
    nas_servers: tuple[Nas, ...]

    @property
    def servers(self) -> tuple[Nas, ...]:
        """The NAS servers to deploy (enabled), in values order."""
        return tuple(nas for nas in self.nas_servers if nas.enabled)

    def server(self, name: str) -> Nas | None:
        """The enabled NAS named ``name``, if any."""
        return next((nas for nas in self.servers if nas.name == name), None)

    def object_name(self, nas: str) -> str:
        """What a NAS's objects, pod, volumes and export are called (the name, prefixed)."""
        return f"{self.name_prefix}{nas}"

    def nas_of(self, object_name: str) -> str | None:
        """The NAS an object of this deployment is named after (None: another deployment's)."""
        if not object_name.startswith(self.name_prefix):
            return None
        return object_name[len(self.name_prefix):]


def build(raw: Mapping[str, Any], target_defaults: Mapping[str, Mapping[str, Any]]) -> Values:
    """Typed values from a complete (defaulted), validated values dict.

    ``target_defaults`` maps a key path (``nfs.allowedClients``) to its default per engine
    target, for keys whose default depends on where the manifests run.
    """
    image = Image.parse(raw["image"])
    mk = raw["minikube"]
    return Values(
        namespace=raw["namespace"],
        name_prefix=raw["namePrefix"],
        image=image,
        windows_root=raw["windowsRoot"],
        node_root=raw["nodeRoot"],
        minikube=Minikube(mk["profile"], mk["driver"], mk["memory"], mk["cpus"],
                          mk["kubernetesVersion"], mk["mountPort"]),
        nas_servers=tuple(_nas(entry, image, target_defaults) for entry in raw["nasServers"]),
    )


def _nas(raw: Mapping[str, Any], image: Image, target_defaults: Mapping[str, Mapping[str, Any]]) -> Nas:
    sync, nfs, service, sidecar = raw["sync"], raw["nfs"], raw["service"], raw["sidecar"]
    clients = target_defaults["nfs.allowedClients"]
    if "allowedClients" in nfs:
        clients = dict.fromkeys(clients, nfs["allowedClients"])
    return Nas(
        name=raw["name"],
        enabled=raw["enabled"],
        role=raw["role"],
        access=raw["access"],
        sync=SyncSettings(sync["mode"], sync["interval"], sync["settle"], sync["maxDeleteFraction"],
                          sync["maxDeleteRate"], sync["maxDelay"], sync["windowsNames"],
                          sync["hashSweep"]["minutes"], sync["hashSweep"]["mbPerSecond"],
                          sync["logLevel"]),
        versions=VersionsSettings(raw["versions"]["days"], str(raw["versions"]["maxSize"])),
        sidecar_enabled=sidecar["enabled"],
        sidecar_image=Image.parse(sidecar.get("image", {}), base=image),
        sidecar_resources=Resources.parse(sidecar["resources"]),
        seed_resources=Resources.parse(raw["seed"]["resources"]),
        seed_stall=raw["seed"]["stallSeconds"],
        nfs=NfsSettings(tuple(nfs["versions"]), nfs["port"], nfs["mountPort"],
                        {target: tuple(cidrs) for target, cidrs in clients.items()},
                        nfs["squash"], nfs["anonymousUid"], nfs["anonymousGid"],
                        Resources.parse(nfs["resources"])),
        service=ServiceSettings(service["type"], service["clusterIP"], service.get("nodePort")),
        podman_port=raw["podman"]["port"],
        storage=Storage(str(raw["storage"]["sizeLimit"]), str(raw["storage"]["stateSizeLimit"]),
                        raw["storage"]["maxFiles"]),
    )
