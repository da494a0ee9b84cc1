"""An export reaches nothing outside itself, whatever handle an NFS client sends (issue #8).

The attack this guards against: a client takes the export's file handle, sets its last 8 bytes
to inode 2 / generation 0 (the root of an ext4 filesystem) and, when the export was a folder of
the host's disk, listed the host's `/` and read root-only files. A raw NFSv4 client
(tests/support/nfs4.py) forges the handles; libnfs cannot.
"""

from __future__ import annotations

import os
import struct

import pytest
from harness import wait_until
from nfs4 import FILEID, OWNER, TYPE, Client, Nfs4Error

from filesim.engines import EngineError

REFUSED = {"NFS4ERR_STALE", "NFS4ERR_BADHANDLE", "NFS4ERR_PERM", "NFS4ERR_ACCESS",
           "NFS4ERR_FHEXPIRED", "NFS4ERR_WRONGSEC", "NFS4ERR_NOTDIR", "NFS4ERR_INVAL"}
HOST_ROOT_NAMES = {b"etc", b"usr", b"proc", b"var", b"root", b"boot"}


@pytest.fixture
def nfs_address(engine):
    if engine.name != "podman":
        pytest.skip("the raw NFS client needs direct TCP access to the export (podman engine)")
    return lambda nas: ("127.0.0.1", engine.server(nas).podman_port)


def reachable(client: Client, fh: bytes) -> set[int]:
    """fileids of everything a client reaches from ``fh`` by walking the tree."""
    found = {client.getattr(fh, (FILEID,))[FILEID]}
    for entry in client.readdir(fh):
        found.add(entry.attrs[FILEID])
        if entry.attrs[TYPE] == 2:
            found |= reachable(client, client.handle(entry.name.decode(), fh))
    return found


def forged(fh: bytes, inode: int, generation: int = 0) -> bytes:
    """The attack: the handle's last 8 bytes replaced by an ext4 (inode, generation)."""
    return fh[:-8] + struct.pack("<II", inode, generation)


def test_every_export_is_a_filesystem_of_its_own(engine):
    host_root = os.statvfs("/").f_fsid
    fsids = {}
    for nas in engine.servers():
        result = engine.exec(nas.name, "nfs", ["stat", "-f", "-c", "%i", "/export"])
        assert result.returncode == 0, result.stdout
        fsids[nas.name] = int(result.stdout.strip(), 16)
    assert host_root not in fsids.values()
    assert len(set(fsids.values())) == len(fsids), f"exports share a filesystem: {fsids}"


def test_forged_handles_reach_nothing_outside_the_export(engine, nfs_address):
    (engine.windows_folder("nas-output-1") / "inside.txt").write_text("in the export\n")
    wait_until(lambda: engine.nfs_read("nas-output-1", "inside.txt") is not None, 30)
    with Client(*nfs_address("nas-output-1"), uid=65534, gid=65534) as client:
        export = client.handle("/export")
        inside = reachable(client, export)
        generation = struct.unpack("<I", export[-4:])[0]
        for inode in range(1, 200):
            for gen in {0, generation}:
                try:
                    attrs = client.getattr(forged(export, inode, gen), (TYPE, FILEID))
                except Nfs4Error as refused:
                    assert refused.name in REFUSED
                    continue
                assert attrs[FILEID] in inside, f"inode {inode} is outside the export"
                if attrs[TYPE] == 2:
                    names = {e.name for e in client.readdir(forged(export, inode, gen))}
                    assert not names & HOST_ROOT_NAMES
        with Client(*nfs_address("nas-output-2")) as sibling:
            other_export = sibling.handle("/export")
        for handle in (other_export, forged(other_export, 2)):
            with pytest.raises(Nfs4Error) as refused:
                client.readdir(handle)
            assert refused.value.name in REFUSED


def test_a_root_client_acts_as_nobody(engine, nfs_address):
    with Client(*nfs_address("nas-backup"), uid=0, gid=0) as client:
        export = client.handle("/export")
        client.mkdir(export, "made-by-root")
        assert client.getattr(client.handle("made-by-root", export), (OWNER,))[OWNER] == "65534"
        client.remove(export, "made-by-root")


def test_a_full_export_refuses_writes_and_leaves_the_testers_folder_alone(engine):
    folder = engine.windows_folder("nas-output-2")
    (folder / "tester-keeps.csv").write_text("a,b\n1,2\n")
    wait_until(lambda: engine.nfs_read("nas-output-2", "tester-keeps.csv") is not None, 30)
    with pytest.raises(EngineError, match="NFS write to nas-output-2 failed"):
        engine.nfs_write("nas-output-2", "too-big.bin", os.urandom(40 * 2**20))

    def export_usage():
        """The agent reports the export nearly full (status is rewritten every interval)."""
        usage = next(s for s in engine.status() if s.name == "nas-output-2").agent.get("export")
        return usage if usage and usage["used"] > 0.8 * usage["size"] else None

    assert wait_until(export_usage, 10)["size"] <= 32 * 2**20
    assert (folder / "tester-keeps.csv").read_text() == "a,b\n1,2\n"
    engine.nfs_remove("nas-output-2", "too-big.bin")
    wait_until(lambda: engine.nfs_read("nas-output-2", "too-big.bin") is None, 30)
