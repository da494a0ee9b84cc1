"""NFS clients write through a real nfs-ganesha (in the NAS image) while the agent syncs.

ganesha serves the test's export folder on 127.0.0.1 with filesim's own rendered config; the
client is libnfs (nfs-cp) from the same image; the Windows side is the 9p-like FUSE share.
"""

from __future__ import annotations

import hashlib
import os
import socket

import pytest
from harness import tree_files, wait_until

from filesim import values
from filesim.engines.podman import podman_runner, usable
from filesim.image import ensure
from filesim.manifests import ganesha
from filesim.run import Runner

pytestmark = pytest.mark.podman


@pytest.fixture(scope="session")
def podman():
    runner = podman_runner(Runner())
    if not usable(runner):
        if os.environ.get("FILESIM_REQUIRE_E2E") == "1":
            pytest.fail("podman is required (FILESIM_REQUIRE_E2E=1); run scripts/install.sh")
        pytest.skip("podman is not usable here")
    return runner


@pytest.fixture(scope="session")
def nas_image(podman) -> str:
    ref = values.load([]).image.reference
    ensure(podman, ref)
    return ref


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def nfs_server(podman, nas_image, nfs_dir, tmp_path):
    """ganesha exporting ``nfs_dir`` (as the NAS pod does) on a free 127.0.0.1 port."""
    port = free_port()
    nas = values.load([]).nas_servers[3]  # nas-backup: rw, bidirectional
    conf = tmp_path / "ganesha.conf"
    conf.write_text(ganesha.render(nas, port=port, clients=["127.0.0.1/32"], bind_address="127.0.0.1"))
    os.chmod(nfs_dir, 0o777)
    name = f"filesim-test-ganesha-{port}"
    podman(["podman", "run", "-d", "--rm", "--name", name, "--network", "host", "--read-only",
            "--cap-drop", "ALL", "--cap-add", "DAC_READ_SEARCH,FOWNER,SETGID,SETUID",
            "-v", f"{conf}:/etc/ganesha/ganesha.conf:ro", "-v", f"{nfs_dir}:/export",
            "--tmpfs", "/run/ganesha", nas_image, "ganesha.nfsd", "-F", "-L", "/dev/stdout",
            "-f", "/etc/ganesha/ganesha.conf", "-p", "/run/ganesha/ganesha.pid"])

    def serving():
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(serving, 10)
    yield port
    podman(["podman", "rm", "-f", name], check=False)


def nfs_copy_in(podman, image, port, source_dir, names):
    """Copy files from ``source_dir`` into the export with nfs-cp, in one client container."""
    script = "; ".join(
        f"nfs-cp /src/{n} 'nfs://127.0.0.1/export/{n}?version=4&nfsport={port}' >/dev/null"
        for n in names)
    podman(["podman", "run", "--rm", "--network", "host", "-v", f"{source_dir}:/src:ro", image,
            "sh", "-ec", script])


def test_20_mb_written_over_nfs_arrives_intact(podman, nas_image, nfs_server, share, nfs_dir,
                                               make_agent, tmp_path):
    agent = make_agent(settle=0.5).start()
    source = tmp_path / "client"
    source.mkdir()
    data = os.urandom(20 * 1024 * 1024)
    (source / "big.bin").write_bytes(data)

    nfs_copy_in(podman, nas_image, nfs_server, source, ["big.bin"])

    target = share.backing / "big.bin"
    wait_until(lambda: target.exists() and target.stat().st_size == len(data), 60)
    assert hashlib.md5(target.read_bytes()).hexdigest() == hashlib.md5(data).hexdigest()
    torn = [e for e in agent.log_events() if e["event"] == "copy" and e["path"] == "big.bin"
            and e["bytes"] != len(data)]
    assert torn == [], "a partial version was copied under the final name"


def test_burst_of_small_files_over_nfs(podman, nas_image, nfs_server, share, nfs_dir, make_agent,
                                       tmp_path):
    make_agent().start()
    source = tmp_path / "client"
    source.mkdir()
    names = [f"small-{i:03}.txt" for i in range(200)]
    for name in names:
        (source / name).write_text(f"{name}\n" * 3)

    nfs_copy_in(podman, nas_image, nfs_server, source, names)

    wait_until(lambda: len(tree_files(share.backing)) == len(names), 60)
    assert tree_files(share.backing) == tree_files(source)


def test_windows_edits_are_read_back_over_nfs_at_once(podman, nas_image, nfs_server, share,
                                                     make_agent):
    """Files the agent replaces behind ganesha's back read back whole (Dir_Chunk, attr cache)."""
    make_agent().start()

    def over_nfs() -> str | None:
        result = podman(["podman", "run", "--rm", "--network", "host", nas_image, "nfs-cat",
                         f"nfs://127.0.0.1/export/from-windows.txt?version=4&nfsport={nfs_server}"],
                        check=False)
        return result.stdout if result.returncode == 0 else None

    (share.backing / "from-windows.txt").write_text("tester's input\n")
    wait_until(lambda: over_nfs() == "tester's input\n", 20, step=0.3)
    (share.backing / "from-windows.txt").write_text("edited by the tester, longer now\n")
    wait_until(lambda: over_nfs() == "edited by the tester, longer now\n", 20, step=0.3)
