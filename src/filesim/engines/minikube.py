"""The minikube engine: the kubernetes engine on a minikube profile with the data root mounted.

What is minikube's own: the preflight of the machine, `minikube start`, the data root mounted by
filesim's own `minikube mount` (engines/mount9p.py), the image built inside the profile, the node
reached with `minikube ssh`, and the fixes named in errors. Everything else is
engines/kubernetes.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filesim.background import Background, Seen
from filesim.engines import mount9p
from filesim.engines.base import EngineError, Progress, prepare_share
from filesim.engines.kubernetes import MIN_KUBERNETES, Fixes, KubernetesEngine, version_tuple
from filesim.engines.podman import EXPORT_FS
from filesim.model import Values, is_windows_path, share_folder
from filesim.quantity import mebibytes
from filesim.run import Runner
from filesim.sync.status import MARKER, STATUS_FILE

MIN_MINIKUBE = (1, 33)
#: Memory (MiB) the node keeps for Kubernetes itself besides the NAS pods.
SYSTEM_MEMORY = 1536
#: Where `invoke deploy` puts scripts/export-fs.sh on the node.
NODE_EXPORT_FS = "/tmp/filesim-export-fs.sh"
#: Seconds a newly started mount has to show the NAS folders on the node.
MOUNT_TIMEOUT = 30.0


# -- pure helpers (tested without a cluster) ---------------------------------------------------

def memory_needed(values: Values) -> int:
    """MiB the node needs: every NAS pod's memory limits plus what Kubernetes keeps."""
    total = SYSTEM_MEMORY
    for nas in values.servers:
        for resources in (nas.nfs.resources, nas.sidecar_resources):
            total += mebibytes(resources.limits.get("memory", "64Mi"))
    return total


#: SID of the local group "Hyper-V Administrators" (its name is translated, its SID is not).
HYPERV_ADMINS = "S-1-5-32-578"
#: Windows editions without Hyper-V (EditionID in the registry): Home and its variants.
HOME_EDITIONS = ("Core", "CoreN", "CoreSingleLanguage", "CoreCountrySpecific")


@dataclass(frozen=True)
class WindowsFacts:
    """What minikube's Hyper-V driver needs of the machine and the shell running setup."""

    edition: str
    elevated: bool
    hyperv_admin: bool


def windows_facts() -> WindowsFacts:  # pragma: no cover - read on the tester's Windows machine
    """The Windows edition (registry), the shell's elevation, its Hyper-V group membership."""
    import ctypes
    import subprocess
    import winreg  # type: ignore[import-not-found]

    with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE,
                        r"SOFTWARE\Microsoft\Windows NT\CurrentVersion") as key:
        edition = str(winreg.QueryValueEx(key, "EditionID")[0])
    groups = subprocess.run(["whoami", "/groups"], capture_output=True, text=True, check=False)
    return WindowsFacts(edition, bool(ctypes.windll.shell32.IsUserAnAdmin()),  # type: ignore[attr-defined]
                        HYPERV_ADMINS in groups.stdout)


def hyperv_problems(facts: WindowsFacts) -> list[str]:
    """Why minikube's Hyper-V driver would refuse to start here, one line each with its fix."""
    if facts.edition in HOME_EDITIONS:
        return [f"Windows edition {facts.edition} (Home) has no Hyper-V: install Docker Desktop and "
                f"set minikube.driver to docker (docs/windows.md)"]
    if not (facts.elevated or facts.hyperv_admin):
        return ["minikube's Hyper-V driver needs an elevated shell or membership of Hyper-V "
                "Administrators: run PowerShell as Administrator, or once as Administrator "
                "`Add-LocalGroupMember -SID S-1-5-32-578 -Member $env:USERNAME` and sign in again"]
    return []


def preflight(values: Values, *, which: Callable[[str], str | None] = shutil.which,
              runner: Runner | None = None, on_windows: bool = os.name == "nt",
              facts: Callable[[], WindowsFacts] = windows_facts) -> list[str]:
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
    elif mk.driver == "hyperv":
        problems += hyperv_problems(facts())
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
    """`minikube start` for the profile; the data root is mounted afterwards (mount9p.py)."""
    mk = values.minikube
    return ["minikube", "start", "-p", mk.profile, f"--driver={mk.driver}",
            f"--memory={mk.memory}", f"--cpus={mk.cpus}",
            f"--kubernetes-version={mk.kubernetes_version}"]


def mount_command(values: Values) -> list[str]:
    """The `minikube mount` filesim keeps running: the data root at the node root, fixed port."""
    return mount9p.mount_command(values.minikube.profile, values.windows_root, values.node_root,
                                 values.minikube.mount_port)


def mount_line(seen: Seen, port: int, log: Path) -> str:
    """One line about the mount for `invoke status` and `invoke setup`."""
    state = seen.state
    if not seen.running:
        return (f"minikube mount: {seen.detail}; the agents see no Windows folder until "
                f"`invoke setup --engine minikube` or `invoke deploy` starts it")
    if state.get("child") is None:
        wait = max(0.0, float(state.get("next_try") or 0) - time.time())
        return (f"minikube mount: not mounted ({state.get('last_end') or 'starting'}), next try in "
                f"{wait:.0f}s; see {log}; on Windows, is port {port} "
                f"allowed in the firewall? (docs/windows.md)")
    restarts = state.get("restarts") or 0
    return (f"minikube mount: running (pid {seen.pid}, port {port})"
            + (f"; restarted {restarts} time(s), last ended: {state.get('last_end')}" if restarts
               else ""))


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
    #: minikube's VM is an initramfs: only a few folders outlive `minikube stop` (its handbook,
    #: persistent_volumes.md), /var/lib/minikube among them. Exports there are on its disk,
    #: not in its RAM, and what an agent had not yet flushed survives a restart.
    exports_root = "/var/lib/minikube/filesim"

    def __init__(self, values: Values, runner: Runner, context: str | None = None):
        super().__init__(values, runner, context or values.minikube.profile)
        self._script_on_node = False

    @property
    def fixes(self) -> Fixes:
        """What a minikube user runs to fix what the cluster reports."""
        return fixes(self.context)

    # setup ----------------------------------------------------------------------------------

    def setup(self, progress: Progress) -> None:
        """Preflight, the folders (the mount needs them), minikube, the mount, the image."""
        problems = preflight(self.values, runner=self.run)
        if self.run.dry_run:
            for line in problems:
                print(f"# preflight: {line}")
        elif problems:
            raise EngineError("\n".join(problems))
        changed = False
        root = self.values.windows_root
        for nas in self.servers():
            changed |= prepare_share(Path(share_folder(root, nas.name)), nas, self.run.dry_run,
                                     progress)
        if self._profile_running():
            progress(f"minikube profile {self.context} is running")
        else:
            self.run(start_command(self.values), capture=False)
            changed = True
        changed |= self.ensure_mount(progress)
        if self._image_present():
            progress(f"image {self.image_ref} is present in minikube")
        else:
            self.run(image_build_command(self.values), capture=False)
            changed = True
        if not changed and not self.run.dry_run:
            progress("nothing to do: minikube is running, the folders, the mount and the image exist")

    def apply(self, progress: Progress) -> None:
        self._api("dynamic")  # the cluster answers before anything starts
        self.ensure_mount(progress)
        super().apply(progress)

    # the mount of the data root ---------------------------------------------------------------

    @property
    def mount(self) -> Background:
        """The supervisor of `minikube mount` (its state and log are in the data root)."""
        return mount9p.background(Path(self.values.windows_root))

    def ensure_mount(self, progress: Progress) -> bool:
        """Make sure the node sees the NAS folders through filesim's mount; whether it started it.

        The proof is the first NAS's marker seen from the node, not the process alone.
        """
        command = mount_command(self.values)
        if self.run.dry_run:
            print(f"# in the background, kept running by filesim: {shlex.join(command)}")
            return False
        if is_windows_path(self.values.windows_root) and os.name != "nt":
            raise EngineError(f"windowsRoot {self.values.windows_root} is a Windows path but this "
                              f"machine is not Windows: set windowsRoot to a local folder")
        seen = self.mount.seen()
        if seen.running and seen.state.get("command") == command and self._node_sees_folders():
            return False
        if not (seen.running and seen.state.get("command") == command):
            self.mount.start("filesim.engines.mount9p", ["--", *command])
            progress(f"started the minikube mount of {self.values.windows_root} at "
                     f"{self.values.node_root} (port {self.values.minikube.mount_port}, "
                     f"log {self.mount.log_file})")
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not self._node_sees_folders():
            if time.monotonic() > deadline:
                raise EngineError(
                    f"the node does not see {self.values.windows_root} at {self.values.node_root} "
                    f"after {MOUNT_TIMEOUT:.0f}s: see {self.mount.log_file}; on Windows allow "
                    f"port {self.values.minikube.mount_port} for minikube in the firewall "
                    f"(docs/windows.md), then run `invoke setup --engine minikube` again")
            time.sleep(1)
        return True

    def _node_sees_folders(self) -> bool:
        first = self.servers()[0].name
        marker = f"{self.values.node_root.rstrip('/')}/{first}/{MARKER}"
        result = self.run(["minikube", "-p", self.context, "ssh", "--", "test", "-f", marker],
                          check=False, reads_only=True)
        return result.returncode == 0

    def host_lines(self) -> list[str]:
        return [mount_line(self.mount.seen(), self.values.minikube.mount_port, self.mount.log_file)]

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
        """Put scripts/export-fs.sh on the node, from its text (LF whatever the checkout).

        Once per task: the VM's /tmp is gone after a restart.
        """
        if self._script_on_node:
            return
        self._script_on_node = True
        with tempfile.TemporaryDirectory() as folder:
            script = Path(folder) / EXPORT_FS.name
            script.write_bytes(EXPORT_FS.read_bytes().replace(b"\r\n", b"\n"))
            self.run(["minikube", "-p", self.context, "cp", str(script), NODE_EXPORT_FS])

    def _export_fs(self, action: str, nas: str, *args: str) -> None:
        self._prepare_node()
        self.run(["minikube", "-p", self.context, "ssh", "--", "sudo",
                  f"FILESIM_NODE_ROOT={self.exports_root}", "sh", NODE_EXPORT_FS, action,
                  self._node_dir(nas), *args])

    def final_status(self, nas: str) -> dict[str, Any] | None:
        result = self.run(["minikube", "-p", self.context, "ssh", "--", "sudo", "cat",
                           f"{self._node_dir(nas)}/state/{STATUS_FILE}"],
                          check=False, reads_only=True)
        try:
            return json.loads(result.stdout)
        except ValueError:
            return None
