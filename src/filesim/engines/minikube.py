"""The minikube engine: the kubernetes engine on a minikube profile with the data root mounted.

What is minikube's own: the preflight of the machine, `minikube start` with the mount, the image
built inside the profile, the node reached with `minikube ssh`, and the fixes named in errors.
Everything else is engines/kubernetes.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filesim.engines.base import EngineError, Progress, prepare_share
from filesim.engines.kubernetes import MIN_KUBERNETES, Fixes, KubernetesEngine, version_tuple
from filesim.engines.podman import EXPORT_FS
from filesim.model import Values, is_windows_path, share_folder
from filesim.quantity import mebibytes
from filesim.run import Runner
from filesim.sync.status import STATUS_FILE

MIN_MINIKUBE = (1, 33)
#: Memory (MiB) the node keeps for Kubernetes itself besides the NAS pods.
SYSTEM_MEMORY = 1536
#: Where `invoke deploy` puts scripts/export-fs.sh on the node.
NODE_EXPORT_FS = "/tmp/filesim-export-fs.sh"


# -- pure helpers (tested without a cluster) ---------------------------------------------------

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



def fixes(profile: str) -> Fixes:
    """How a minikube user fixes what the cluster reports."""
    return Fixes(
        no_context=f"run `invoke setup --engine minikube`, which starts minikube profile {profile}",
        unreachable=f"is minikube running? `minikube start -p {profile}` or `invoke setup "
                    f"--engine minikube`",
        credentials=f"run `minikube update-context -p {profile}`",
        image="run `invoke setup --engine minikube`, which builds it inside minikube",
        capacity="give minikube more memory/CPUs")


# -- the engine --------------------------------------------------------------------------------

class MinikubeEngine(KubernetesEngine):
    """NAS servers in a minikube profile; the data root is mounted at the node root (9p)."""

    name = "minikube"

    def __init__(self, values: Values, runner: Runner, context: str | None = None):
        super().__init__(values, runner, context or values.minikube.profile)

    @property
    def fixes(self) -> Fixes:
        """What a minikube user runs to fix what the cluster reports."""
        return fixes(self.context)

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

    # the node, through `minikube ssh` (the VM has no Python) ---------------------------------

    def _prepare_node(self) -> None:
        """Put scripts/export-fs.sh on the node."""
        self.run(["minikube", "-p", self.context, "cp", str(EXPORT_FS), NODE_EXPORT_FS])

    def _export_fs(self, action: str, nas: str, *args: str) -> None:
        self.run(["minikube", "-p", self.context, "ssh", "--", "sudo", "sh", NODE_EXPORT_FS, action,
                  self._node_dir(nas), *args])

    def final_status(self, nas: str) -> dict[str, Any] | None:
        result = self.run(["minikube", "-p", self.context, "ssh", "--", "sudo", "cat",
                           f"{self._node_dir(nas)}/state/{STATUS_FILE}"],
                          check=False, reads_only=True)
        try:
            return json.loads(result.stdout)
        except ValueError:
            return None
