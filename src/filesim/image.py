"""Build the NAS image from Debian packages, without a registry (debootstrap → podman import).

images/nas/Containerfile builds the same contents from a registry's Debian image; both read
images/nas/packages.txt and install the sync agent at the same paths.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from filesim import PROJECT_ROOT
from filesim.run import CommandError, Runner

RELEASE = "trixie"
IMAGE_DIR = PROJECT_ROOT / "images" / "nas"
AGENT_SOURCES = [PROJECT_ROOT / "src" / "filesim" / "__init__.py",
                 *sorted((PROJECT_ROOT / "src" / "filesim" / "sync").glob("*.py")),
                 *sorted((PROJECT_ROOT / "src" / "filesim" / "nas").glob("*.py"))]
#: Scripts installed in /usr/local/bin: the agent's and the NFS supervisor's entry points and an
#: NFS delete tool.
SCRIPTS = ("filesim-sync", "filesim-nfs", "nfs-rm")
INPUTS_LABEL = "dev.filesim.inputs"
SITE_PACKAGES = "usr/lib/python3/dist-packages"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: What the image keeps of Debian's minbase that the NAS never uses.
PRUNE = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
         "usr/share/locale", "usr/share/info")


def packages() -> list[str]:
    """The image's Debian packages (images/nas/packages.txt)."""
    lines = (IMAGE_DIR / "packages.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def inputs_digest() -> str:
    """A digest of everything the image is built from; the image is rebuilt when it changes."""
    digest = hashlib.sha256(RELEASE.encode())
    for path in [IMAGE_DIR / "packages.txt", *(IMAGE_DIR / s for s in SCRIPTS), Path(__file__),
                 *AGENT_SOURCES]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (FILESIM_DEBIAN_MIRROR overrides it)."""
    if os.environ.get("FILESIM_DEBIAN_MIRROR"):
        return os.environ["FILESIM_DEBIAN_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        try:
            text = source.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
            uri = match.group(1)
            if re.search(r"/debian/?$", uri) and "security" not in uri:
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def current_digest(podman: Runner, ref: str) -> str | None:
    """The inputs digest the image ``ref`` was built from, or None if there is no such image."""
    result = podman(["podman", "image", "inspect", "--format",
                     f'{{{{ index .Config.Labels "{INPUTS_LABEL}" }}}}', ref],
                    check=False, reads_only=True)
    return result.stdout.strip() if result.returncode == 0 else None


def ensure(podman: Runner, ref: str, *, progress: Callable[[str], None] = print) -> bool:
    """Build ``ref`` unless it exists from the same inputs; True if it was built."""
    digest = inputs_digest()
    if current_digest(podman, ref) == digest:
        progress(f"image {ref} is up to date (inputs {digest})")
        return False
    build(podman, ref, digest, progress=progress)
    return True


def build(podman: Runner, ref: str, digest: str, *, progress: Callable[[str], None] = print) -> None:
    """Debootstrap the packages, add the sync agent, import into podman as ``ref``."""
    if podman.dry_run:
        rootfs = "$ROOTFS"
        print(shlex.join(["debootstrap", "--variant=minbase", f"--include={','.join(packages())}",
                          RELEASE, rootfs, debian_mirror()]))
        print(f"# copy the sync agent and {', '.join(SCRIPTS)} into {rootfs} (install_agent)")
        print(f"tar -C {rootfs} -c . | " + shlex.join(_import_argv(ref, digest)))
        return
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="filesim-image-", dir=os.environ.get("TMPDIR", "/var/tmp")))
    root = work / "rootfs"
    try:
        mirror = debian_mirror()
        progress(f"building {ref}: debootstrap {RELEASE} from {mirror} (about a minute)")
        podman(["debootstrap", "--variant=minbase", f"--include={','.join(packages())}",
                RELEASE, root, mirror])
        install_agent(root)
        for path in PRUNE:
            shutil.rmtree(root / path, ignore_errors=True)
        progress(f"importing {ref}")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            _import(podman, tar, ref, digest)
        finally:
            tar.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress(f"built {ref} in {time.monotonic() - started:.0f}s")


def _import_argv(ref: str, digest: str) -> list[str]:
    return ["podman", "import",
            "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change", 'ENTRYPOINT ["/usr/bin/tini", "--"]',
            "--change", f"LABEL {INPUTS_LABEL}={digest}",
            "-", ref]


def _import(podman: Runner, tar: subprocess.Popen[bytes], ref: str, digest: str) -> None:
    argv = _import_argv(ref, digest)
    env = {**os.environ, **podman.env}
    result = subprocess.run(argv, stdin=tar.stdout, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise CommandError(argv, result.returncode, result.stdout + result.stderr)


def install_agent(root: Path) -> None:
    """Put the sync agent where the Containerfile puts it."""
    package = root / SITE_PACKAGES / "filesim"
    for sub in ("sync", "nas"):
        (package / sub).mkdir(parents=True, exist_ok=True)
    for source in AGENT_SOURCES:
        target = package / source.relative_to(PROJECT_ROOT / "src" / "filesim")
        shutil.copyfile(source, target)
    for name in SCRIPTS:  # LF line ends whatever the checkout (a CR breaks the shebang)
        script = root / "usr/local/bin" / name
        script.write_bytes((IMAGE_DIR / name).read_bytes().replace(b"\r\n", b"\n"))
        script.chmod(0o755)
