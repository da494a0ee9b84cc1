"""Faults on demand (#22): the vocabulary, and the NFS server's supervisor as a real process.

The supervisor (filesim-nfs) runs here around a stand-in server (tests/support/fake_nfsd.py:
real sockets, RPC record framing, not NFS); `full` fills a real tmpfs. The e2e suite puts the
same faults on real ganesha in podman and checks them with a real NFS client.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import wait_until

from filesim.nas import faults
from filesim.nas.faults import APPLIED_FILE, BALLAST, BALLAST_MARK, Fault
from filesim.nas.nfsd import behind_relay, port_of, read_only

FAKE_NFSD = Path(__file__).parent / "support" / "fake_nfsd.py"
CONFIG = """NFS_CORE_PARAM {{
    NFS_Port = {port};
}}
EXPORT {{
    Export_Id = 1;
    Access_Type = None;
    CLIENT {{
        Clients = *;
        Access_Type = RW;
    }}
}}
"""


@pytest.mark.parametrize(("text", "expected"), [
    ("down", Fault("down")), ("hang", Fault("hang")), ("readonly", Fault("readonly")),
    ("full", Fault("full")), ("slow", Fault("slow", 200)), ("slow=50", Fault("slow", 50)),
    ("flaky", Fault("flaky", 0.5)), ("flaky=0.2", Fault("flaky", 0.2)),
])
def test_the_vocabulary(text, expected):
    assert faults.parse(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("explode", "unknown fault 'explode': choose one of down, hang, readonly, full, slow, flaky"),
    ("slow=0", "slow=0: give milliseconds between 1 and 60000, e.g. slow=200"),
    ("slow=soon", "slow=soon: give milliseconds between 1 and 60000"),
    ("flaky=2", "flaky=2: give fraction of connections between 0.01 and 1, e.g. flaky=0.5"),
    ("flaky=nan", "flaky=nan: give fraction of connections"),
    ("down=3", "fault down takes no value: use down"),
    ("eio", "fault eio needs device-mapper on the node under the export, which this machine's "
            "kernel lacks"),
])
def test_bad_faults_are_one_line_naming_the_fix(text, message):
    with pytest.raises(ValueError) as refused:
        faults.parse(text)
    assert str(refused.value).startswith(message)


def test_configuration_variants():
    config = CONFIG.format(port=20499)
    assert "Access_Type = RO;" in read_only(config) and "Access_Type = None;" in read_only(config)
    relayed = behind_relay(config, 31000)
    assert port_of(relayed) == 31000 and "Bind_Addr = 127.0.0.1;" in relayed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ask(port: int, data: bytes = b"ping", timeout: float = 5.0) -> bytes:
    """One request on a new connection; the reply's payload."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">I", 0x80000000 | len(data)) + data)
        header = sock.recv(4, socket.MSG_WAITALL)
        if len(header) < 4:
            raise ConnectionResetError("closed")
        return sock.recv(struct.unpack(">I", header)[0] & 0x7FFFFFFF, socket.MSG_WAITALL)


class Supervised:
    """filesim-nfs running the stand-in server, with its state, export and run folders."""

    def __init__(self, root: Path, export: Path | None = None):
        self.port = free_port()
        self.state, self.run_dir = root / "state", root / "run"
        self.export = export or root / "export"
        for folder in (self.state, self.run_dir, self.export):
            folder.mkdir(exist_ok=True)
        config = root / "ganesha.conf"
        config.write_text(CONFIG.format(port=self.port))
        self.base = self.command()
        self.process = subprocess.Popen(
            [*self.base, "run", "--", sys.executable, str(FAKE_NFSD), "-f", str(config)],
            stderr=subprocess.PIPE, text=True)
        wait_until(lambda: self._answers(), 15)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "filesim.nas.nfsd", "--state", str(self.state), "--export",
                str(self.export), "--run-dir", str(self.run_dir)]

    def _answers(self) -> bool:
        assert self.process.poll() is None, self.process.stderr.read()
        try:
            return ask(self.port, timeout=1) == b"RW ping"
        except OSError:
            return False

    def fault(self, *args: str) -> dict:
        result = subprocess.run([*self.base, "fault", *args], capture_output=True, text=True,
                                timeout=60)
        return json.loads(result.stdout)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)


@pytest.fixture
def supervised(tmp_path):
    nfsd = Supervised(tmp_path)
    yield nfsd
    nfsd.stop()


def test_down_refuses_connections_and_clear_serves_again(supervised):
    assert supervised.fault("set", "down")["ok"]
    with pytest.raises(ConnectionRefusedError):
        ask(supervised.port)
    assert supervised.fault("clear")["ok"]
    assert ask(supervised.port) == b"RW ping"


def test_hang_accepts_and_answers_nothing(supervised):
    assert supervised.fault("set", "hang")["ok"]
    with pytest.raises(TimeoutError):
        ask(supervised.port, timeout=1.0)  # the connection opens; no reply comes
    assert supervised.fault("clear")["ok"]
    assert ask(supervised.port) == b"RW ping"


def test_readonly_restarts_the_server_with_read_only_access(supervised):
    assert supervised.fault("set", "readonly")["ok"]
    assert ask(supervised.port) == b"RO ping"
    assert supervised.fault("clear")["ok"]
    assert ask(supervised.port) == b"RW ping"


def test_slow_delays_every_reply_and_costs_nothing_once_cleared(supervised):
    started = time.monotonic()
    ask(supervised.port)
    direct = time.monotonic() - started
    assert supervised.fault("set", "slow", "--value", "300")["ok"]
    started = time.monotonic()
    assert ask(supervised.port) == b"RW ping"
    assert time.monotonic() - started >= 0.3
    assert supervised.fault("clear")["ok"]
    started = time.monotonic()
    ask(supervised.port)
    assert time.monotonic() - started < 0.3 + direct  # no relay left in the way


def test_flaky_resets_some_connections_and_serves_the_others(supervised):
    assert supervised.fault("set", "flaky", "--value", "0.5")["ok"]
    outcomes = []
    for _ in range(20):
        try:
            outcomes.append(ask(supervised.port) == b"RW ping")
        except ConnectionError:
            outcomes.append(False)
    assert 0 < outcomes.count(True) < 20


def test_a_fault_with_a_deadline_ends_by_itself(supervised):
    assert supervised.fault("set", "down", "--for", "1")["ok"]
    with pytest.raises(ConnectionRefusedError):
        ask(supervised.port)
    wait_until(lambda: supervised._answers(), 10)
    wait_until(lambda: faults.read(supervised.state, APPLIED_FILE) is None, 5)
    assert faults.read(supervised.state) is None  # the request went with it


def test_the_liveness_probe_accepts_a_server_down_on_purpose(supervised):
    alive = [*supervised.command(), "alive"]
    assert subprocess.run(alive, timeout=30).returncode == 0
    supervised.fault("set", "down")
    assert subprocess.run(alive, timeout=30).returncode == 0
    supervised.stop()  # now nothing answers, and no fault says it must not
    faults.write(supervised.state, None, APPLIED_FILE)
    assert subprocess.run(alive, timeout=30).returncode == 1


@pytest.fixture
def small_filesystem(tmp_path):
    """A tmpfs of 8 MiB and 300 inodes (root can mount one here)."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,nr_inodes=300", "tmpfs", str(mount)],
                   check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_takes_space_and_inodes_and_clear_gives_them_back(tmp_path, small_filesystem):
    (small_filesystem / "kept.txt").write_text("written before the fault\n")
    nfsd = Supervised(tmp_path, export=small_filesystem)
    try:
        assert nfsd.fault("set", "full")["ok"]
        with pytest.raises(OSError) as refused, open(small_filesystem / "big.bin", "wb") as big:
            big.write(os.urandom(2 << 20))
            big.flush()
            os.fsync(big.fileno())
        assert refused.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as no_inode:
            (small_filesystem / "empty.txt").touch()
        assert no_inode.value.errno == errno.ENOSPC
        assert (small_filesystem / "kept.txt").read_text() == "written before the fault\n"
        assert nfsd.fault("clear")["ok"]
        assert not (small_filesystem / BALLAST).exists()
        (small_filesystem / "big.bin").write_bytes(os.urandom(2 << 20))
    finally:
        nfsd.stop()


@pytest.mark.slow
def test_what_a_full_export_refused_lands_as_soon_as_the_fault_ends(tmp_path, nfs_dir, share,
                                                                     make_agent):
    """The agent waits, reports, and tries again when the fault ends, not at its back-off."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,nr_inodes=300", "tmpfs", str(nfs_dir)],
                   check=True)
    nfsd = Supervised(tmp_path, export=nfs_dir)  # the agent's state folder is the supervisor's
    try:
        agent = make_agent(interval=0.5).start()
        assert nfsd.fault("set", "full")["ok"]
        (share.backing / "dropped-while-full.txt").write_text("it waits, reported\n")
        wait_until(lambda: [p for p in agent.status()["problems"]
                            if p["path"] == "dropped-while-full.txt"], 30)
        time.sleep(20)  # tried at 0, 1, 3, 7 and 15 s: the next try is 16 s away
        assert agent.status()["fault"]["kind"] == "full"
        assert nfsd.fault("clear")["ok"]
        wait_until(lambda: (nfs_dir / "dropped-while-full.txt").exists(), 5)
        assert (nfs_dir / "dropped-while-full.txt").read_text() == "it waits, reported\n"
        time.sleep(2)
        assert not (share.backing / BALLAST).exists()  # the ballast never reaches Windows
        assert agent.status()["errors"] == 0
    finally:
        nfsd.stop()
        subprocess.run(["umount", "-l", str(nfs_dir)], check=False)


def test_a_clients_own_folder_named_like_the_ballast_is_neither_removed_nor_ignored(tmp_path):
    from filesim.sync.tree import Tree

    export = tmp_path / "export"
    (export / BALLAST).mkdir(parents=True)
    (export / BALLAST / "mine.txt").write_text("a client's file\n")
    nfsd = Supervised(tmp_path, export=export)  # a start clears a ballast left by a stop
    nfsd.stop()
    assert (export / BALLAST / "mine.txt").read_text() == "a client's file\n"
    assert not Tree(export, "nfs").ignored("", BALLAST)


def test_a_ballast_mark_a_client_forged_removes_and_hides_nothing(tmp_path):
    """Root-squashed, a client's mark is nobody's: its folder stays and is synced."""
    from filesim.nas.nfsd import fill, unfill
    from filesim.sync.tree import Tree

    export = tmp_path / "export"
    (export / BALLAST).mkdir(parents=True)
    (export / BALLAST / "mine.txt").write_text("a client's file\n")
    (export / BALLAST / BALLAST_MARK).write_text("forged\n")
    for path in (export / BALLAST, export / BALLAST / BALLAST_MARK, export / BALLAST / "mine.txt"):
        os.chown(path, 65534, 65534)  # what root squash makes of a client's root
    assert not Tree(export, "nfs").ignored("", BALLAST)
    unfill(export)
    assert (export / BALLAST / "mine.txt").read_text() == "a client's file\n"

    # The real one, made by the supervisor (root), is ignored and given back.
    other = tmp_path / "other"
    other.mkdir()
    os.chown(other, 65534, 65534)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=64", "tmpfs", str(other)],
                   check=True)
    try:
        fill(other)
        assert Tree(other, "nfs").ignored("", BALLAST)
        unfill(other)
        assert not (other / BALLAST).exists()
    finally:
        subprocess.run(["umount", str(other)], check=True)
