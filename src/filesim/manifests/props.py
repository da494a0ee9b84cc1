"""Typed inputs of the constructs, resolved once from values."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from filesim.image import reference
from filesim.manifests import ganesha

#: Paths inside the NAS containers.
EXPORT_DIR = ganesha.EXPORT_PATH
WINDOWS_DIR = "/mnt/windows"
STATE_DIR = "/var/lib/filesim-sync"
GANESHA_CONF_DIR = "/etc/ganesha"


#: emptyDir volumes of a NAS pod (podman turns each into a volume of the same name).
EMPTY_DIRS = ("export", "state", "ganesha-run", "rpcbind-run")


def volume_name(nas: str, suffix: str) -> str:
    """A NAS pod's volume name; podman shares volumes by name, so it carries the NAS name."""
    return f"{nas}-{suffix}"


def ganesha_config_name(nas: str) -> str:
    """The ganesha ConfigMap of a NAS (podman names its volume after it)."""
    return f"{nas}-ganesha"


class Target(StrEnum):
    """Where the manifests run."""

    KUBERNETES = "kubernetes"
    PODMAN = "podman"


#: Linux capabilities each container needs, measured with --cap-drop ALL (docs/design.md).
NFS_CAPABILITIES = ("DAC_READ_SEARCH", "FOWNER", "SETGID", "SETUID")
SYNC_CAPABILITIES = ("DAC_OVERRIDE",)
RPCBIND_CAPABILITIES = ("NET_BIND_SERVICE", "SETGID", "SETUID")


@dataclass(frozen=True)
class NasProps:
    """Everything one NAS construct needs.

    Attributes:
        nas: the NAS entry of the resolved values.
        target: the engine the manifests are for.
        namespace: namespace of the namespaced objects (kubernetes target).
        image: ``{repository, tag, pullPolicy}`` of the NAS image.
        node_root: host folder holding one sub-folder per NAS (the Windows share's mount point).
    """

    nas: dict[str, Any]
    target: Target
    namespace: str
    image: dict[str, Any]
    node_root: str

    @property
    def name(self) -> str:
        """The NAS name."""
        return self.nas["name"]

    @property
    def nfs_port(self) -> int:
        """The port ganesha listens on: one per NAS on podman's shared host network."""
        return self.nas["podman"]["port"] if self.target is Target.PODMAN else self.nas["nfs"]["port"]

    @property
    def share_path(self) -> str:
        """The NAS's folder on the node."""
        return f"{self.node_root.rstrip('/')}/{self.name}"

    def image_ref(self, override: dict[str, Any] | None = None) -> str:
        """``repository:tag`` of the image, with an optional per-container override."""
        return reference({**self.image, **(override or {})})

    def sync_args(self, *, once: bool) -> list[str]:
        """The filesim-sync command line for the seed (``once``) or the sidecar."""
        sync = self.nas["sync"]
        args = [
            "filesim-sync",
            "--nfs", EXPORT_DIR,
            "--windows", WINDOWS_DIR,
            "--state", STATE_DIR,
            "--mode", sync["mode"],
            "--interval", _number(sync["interval"]),
            "--settle", _number(sync["settle"]),
            "--max-delete-fraction", _number(sync["maxDeleteFraction"]),
            "--log-format", "json",
        ]
        return [*args, "--once"] if once else args


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
