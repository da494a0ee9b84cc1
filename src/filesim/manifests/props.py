"""Typed inputs of the constructs, resolved once from values, and what each target differs in."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from filesim.manifests import ganesha
from filesim.model import Image, Nas, share_folder
from filesim.paths import node_path
from filesim.quantity import to_bytes

#: Paths inside the NAS containers.
EXPORT_DIR = ganesha.EXPORT_PATH
#: The folder holding every NAS's Windows folder: mounted whole, so a NAS folder deleted and
#: created again is seen without a restart.
WINDOWS_ROOT_DIR = "/mnt/windows-root"
STATE_DIR = "/var/lib/filesim-sync"
GANESHA_CONF_DIR = "/etc/ganesha"


#: emptyDir volumes of a NAS pod (podman turns each into a volume of the same name).
EMPTY_DIRS = ("ganesha-run", "rpcbind-run")
#: Where each NAS's export filesystem and agent state live on the machine that runs the pods
#: (scripts/export-fs.sh prepares them): ``<root>/<namespace>/<nas>/{export,state}``.
NODE_ROOT = "/var/lib/filesim"
#: The namespace's labels. Pod Security "baseline" (hardened clusters) refuses hostPath,
#: DAC_READ_SEARCH and the privileged one-shot node pod that NAS pods need: the namespace asks
#: for "privileged" where the cluster lets a user set it.
NAMESPACE_LABELS = {"app.kubernetes.io/part-of": "filesim",
                    "pod-security.kubernetes.io/enforce": "privileged"}


def volume_name(nas: str, suffix: str) -> str:
    """A NAS pod's volume name; podman shares volumes by name, so it carries the NAS name."""
    return f"{nas}-{suffix}"


def node_dir(namespace: str, nas: str, root: str = NODE_ROOT) -> str:
    """The folder holding one NAS's export filesystem and agent state on its node."""
    return node_path(root, namespace, nas)


def ganesha_config_name(nas: str) -> str:
    """The ganesha ConfigMap of a NAS (podman names its volume after it)."""
    return f"{nas}-ganesha"


class Target(StrEnum):
    """Where the manifests run."""

    KUBERNETES = "kubernetes"
    PODMAN = "podman"

    @property
    def traits(self) -> TargetTraits:
        """What this target differs in."""
        return TRAITS[self]


@dataclass(frozen=True)
class TargetTraits:
    """Everything the kubernetes and podman targets do differently (field-facts §4).

    Attributes:
        native_sidecars: the sync agent is an init container with ``restartPolicy: Always``
            (podman blocks the pod on those: it runs as a regular container).
        pod_restart_policy: podman 4.3 applies the pod's policy to init containers, and Always
            blocks the pod there.
        host_network: podman pods share the host network, each NAS on its own port.
        bind_address: ganesha's listening address (podman: loopback only).
        probes: podman turns probes into systemd timers, which need systemd.
        namespaced: objects carry a namespace.
        cluster_objects: Services, PersistentVolumes/Claims and the discovery ConfigMap.
        local_image: the image is built on this machine (never pulled from ``image.pullFrom``).
    """

    native_sidecars: bool
    pod_restart_policy: str
    host_network: bool | None
    bind_address: str | None
    probes: bool
    namespaced: bool
    cluster_objects: bool
    local_image: bool


TRAITS = {
    Target.KUBERNETES: TargetTraits(native_sidecars=True, pod_restart_policy="Always",
                                    host_network=None, bind_address=None, probes=True,
                                    namespaced=True, cluster_objects=True, local_image=False),
    Target.PODMAN: TargetTraits(native_sidecars=False, pod_restart_policy="OnFailure",
                                host_network=True, bind_address="127.0.0.1", probes=False,
                                namespaced=False, cluster_objects=False, local_image=True),
}


#: Linux capabilities each container needs, measured with --cap-drop ALL (docs/design.md).
NFS_CAPABILITIES = ("DAC_READ_SEARCH", "FOWNER", "SETGID", "SETUID")
SYNC_CAPABILITIES = ("DAC_OVERRIDE",)
RPCBIND_CAPABILITIES = ("NET_BIND_SERVICE", "SETGID", "SETUID")


@dataclass(frozen=True)
class NasProps:
    r"""Everything one NAS construct needs.

    Attributes:
        nas: the NAS of the values.
        target: the engine the manifests are for.
        namespace: namespace of the namespaced objects (kubernetes target).
        image: the NAS image.
        node_root: host folder holding one sub-folder per NAS (the Windows share's mount point).
        windows_root: the same folder as the tester's machine names it (C:\simulator-data).
        name_prefix: put before every object's name (values ``namePrefix``).
        exports_root: where exports and agent state live on the node (a folder the node keeps
            across restarts: minikube's is under /var/lib/minikube).
    """

    nas: Nas
    target: Target
    namespace: str
    image: Image
    node_root: str
    windows_root: str
    name_prefix: str = ""
    exports_root: str = NODE_ROOT

    @property
    def name(self) -> str:
        """What the NAS's objects are called: its name, prefixed."""
        return f"{self.name_prefix}{self.nas.name}"

    @property
    def traits(self) -> TargetTraits:
        """What the target differs in."""
        return self.target.traits

    def reference(self, image: Image) -> str:
        """What a container of this target names ``image`` by."""
        return image.local_reference if self.traits.local_image else image.reference

    @property
    def nfs_port(self) -> int:
        """The port ganesha listens on: one per NAS on podman's shared host network."""
        return self.nas.podman_port if self.traits.host_network else self.nas.nfs.port

    @property
    def clients(self) -> tuple[str, ...]:
        """The CIDRs allowed to mount the export on this target."""
        return self.nas.nfs.allowed_clients[self.target.value]

    @property
    def node_dir(self) -> str:
        """The folder holding this NAS's export filesystem and agent state on its node."""
        return node_dir(self.namespace, self.name, self.exports_root)

    @property
    def windows_dir(self) -> str:
        """The NAS's Windows folder inside the sync containers (named after the NAS)."""
        return f"{WINDOWS_ROOT_DIR}/{self.nas.name}"

    def sync_args(self, *, once: bool) -> list[str]:
        """The filesim-sync command line for the seed (``once``) or the sidecar."""
        sync, versions = self.nas.sync, self.nas.versions
        args = [
            "filesim-sync",
            "--nfs", EXPORT_DIR,
            "--windows", self.windows_dir,
            "--state", STATE_DIR,
            "--mode", sync.mode,
            "--interval", _number(sync.interval),
            "--settle", _number(sync.settle),
            "--max-delay", _number(sync.max_delay),
            "--max-delete-fraction", _number(sync.max_delete_fraction),
            "--max-delete-rate", str(sync.max_delete_rate),
            "--windows-names", sync.windows_names,
            "--windows-root", share_folder(self.windows_root, self.nas.name),
            "--versions-days", _number(versions.days),
            "--versions-max-bytes", str(to_bytes(versions.max_size)),
            "--hash-sweep-minutes", _number(sync.hash_sweep_minutes),
            "--hash-sweep-mb-per-second", _number(sync.hash_sweep_mb_per_second),
            "--log-level", sync.log_level,
            "--log-format", "json",
            "--require-own-filesystem",
        ]
        return [*args, "--once"] if once else args


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
