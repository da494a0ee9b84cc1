"""The NFS server's supervisor: runs ganesha in the nfs container and applies faults to it.

``filesim-nfs --state DIR run -- ganesha.nfsd … -f CONF …`` starts ganesha from a working copy
of its configuration and looks at ``DIR/fault.json`` every POLL seconds (faults.py). Every
mechanism stays inside the NAS: ganesha itself is stopped (``down``), frozen (``hang``) or
restarted with a read-only export (``readonly``); ``full`` takes the export's free inodes and
space with a ballast; ``slow`` and ``flaky`` restart ganesha on a loopback port behind a relay
that holds the public one. With no fault on, ganesha serves the public port itself: no relay,
no cost. A fault past its deadline is cleared here, whatever happened to the task that set it.

``filesim-nfs --state DIR fault set KIND [--value V] [--for S]`` / ``fault clear`` ask for a
fault and wait until the supervisor applied it; ``alive`` is the container's liveness probe.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from filesim.nas import faults
from filesim.nas.faults import APPLIED_FILE, BALLAST, BALLAST_MARK, Fault, is_ballast

POLL = 0.2
#: Seconds ganesha has to listen after a start, and to end after SIGTERM.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
WORKING_CONFIG = "ganesha-active.conf"


# -- configuration variants (pure) -------------------------------------------------------------

def port_of(config: str) -> int:
    """The NFS port a ganesha configuration serves."""
    match = re.search(r"\bNFS_Port\s*=\s*(\d+)\s*;", config)
    return int(match.group(1)) if match else 2049


def bind_of(config: str) -> str:
    """The address it binds (``0.0.0.0`` when it names none)."""
    match = re.search(r"\bBind_Addr\s*=\s*([^;\s]+)\s*;", config)
    return match.group(1) if match else "0.0.0.0"


def read_only(config: str) -> str:
    """The same configuration with every client's access read-only."""
    return re.sub(r"(CLIENT\s*\{[^}]*?Access_Type\s*=\s*)RW\s*;", r"\1RO;", config)


def behind_relay(config: str, port: int) -> str:
    """The same configuration serving ``port`` on loopback only (the relay holds the public one)."""
    config = re.sub(r"\bNFS_Port\s*=\s*\d+\s*;", f"NFS_Port = {port};", config, count=1)
    if re.search(r"\bBind_Addr\s*=", config):
        return re.sub(r"\bBind_Addr\s*=\s*[^;]+;", "Bind_Addr = 127.0.0.1;", config, count=1)
    return re.sub(r"(NFS_CORE_PARAM\s*\{)", r"\1\n    Bind_Addr = 127.0.0.1;", config, count=1)


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the mechanisms ----------------------------------------------------------------------------

class Server:
    """ganesha as a child process, started from a given configuration text."""

    def __init__(self, argv: list[str], run_dir: Path):
        if "-f" not in argv:
            raise SystemExit("filesim-nfs: the server's command needs -f CONFIG")
        self.argv = list(argv)
        at = self.argv.index("-f") + 1
        self.original = Path(self.argv[at]).read_text()
        self.working = run_dir / WORKING_CONFIG
        self.argv[at] = str(self.working)
        self.process: subprocess.Popen[bytes] | None = None
        self.config = ""
        self.frozen = False

    @property
    def running(self) -> bool:
        """Whether the server process is alive (frozen counts)."""
        return self.process is not None and self.process.poll() is None

    def start(self, config: str) -> None:
        """(Re)start it serving ``config``; returns once it listens."""
        self.stop()
        self.working.write_text(config)
        self.config = config
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL)
        port, bind = port_of(config), bind_of(config)
        host = "127.0.0.1" if bind in ("0.0.0.0", "::", "*") else bind
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.running:
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the NFS server did not listen on {host}:{port} within "
                           f"{START_TIMEOUT:.0f}s (exit {self.process.poll()})")

    def stop(self) -> None:
        """End the server (thawed first), killing it if it does not end in STOP_TIMEOUT."""
        if not self.running:
            self.process = None
            return
        assert self.process is not None
        self.thaw()
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: it keeps its port (the kernel still accepts connections) and answers nothing."""
        if self.running and self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        """SIGCONT, if frozen."""
        if self.frozen and self.running and self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)
        self.frozen = False


class Relay:
    """The public port while ``slow`` or ``flaky`` is on: forwards to ganesha on loopback.

    ``delay`` seconds before each RPC reply (replies are found by RPC record marking);
    ``reset`` the fraction of new connections closed with a reset at once.
    """

    def __init__(self, bind: str, port: int, upstream: int, delay: float = 0.0, reset: float = 0.0):
        self.upstream, self.delay, self.reset = upstream, delay, reset
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("" if bind in ("0.0.0.0", "*") else bind, port))
        self.listener.listen(64)
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True, name="relay").start()

    def stop(self) -> None:
        """Close the public port and every connection through the relay."""
        self.stopped = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for sock in self.open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.open.clear()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if random.random() < self.reset:  # a reset, as a flaky network or server sends
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.open |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self.delay), daemon=True).start()

    def _pump(self, source: socket.socket, dest: socket.socket, delay: float) -> None:
        left = 0  # bytes left of the current record fragment
        header = b""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if delay:
                    out = b""
                    while data:
                        if left == 0:  # a fragment header: 4 bytes, last-fragment bit + length
                            need = 4 - len(header)
                            header, data = header + data[:need], data[need:]
                            if len(header) < 4:
                                break
                            left = struct.unpack(">I", header)[0] & 0x7FFFFFFF
                            if out:
                                dest.sendall(out)
                                out = b""
                            time.sleep(delay)  # once per reply fragment: the reply waits
                            out, header = header, b""
                        take = data[:left]
                        out, data, left = out + take, data[len(take):], left - len(take)
                    if out:
                        dest.sendall(out)
                else:
                    dest.sendall(data)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= {source, dest}
            for sock in (source, dest):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def fill(export: Path) -> None:
    """Take the export's free inodes, then its free space (``full``): client writes get ENOSPC.

    The files that take the space are made first (they need inodes); each takes what is free,
    halving what it asks while the filesystem's own metadata makes that too much.
    """
    ballast = export / BALLAST
    ballast.mkdir(mode=0o755, exist_ok=True)
    (ballast / BALLAST_MARK).touch()
    spaces = [os.open(ballast / f"space{k:02}", os.O_CREAT | os.O_WRONLY, 0o444) for k in range(16)]
    try:
        for n in range(os.statvfs(export).f_ffree + 1):
            try:
                os.close(os.open(ballast / f"{n:07}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o444))
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    break
                raise
        for fd in spaces:
            st = os.statvfs(export)
            size = st.f_bfree * st.f_frsize
            while size >= 4096:
                try:
                    os.posix_fallocate(fd, os.fstat(fd).st_size, size)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    size //= 2
    finally:
        for fd in spaces:
            os.close(fd)


def unfill(export: Path) -> None:
    """Give back what ``fill`` took: only the folder ``fill`` made (never a client's own)."""
    if is_ballast(export / BALLAST):
        shutil.rmtree(export / BALLAST, ignore_errors=True)


# -- the supervisor ----------------------------------------------------------------------------

class Supervisor:
    """Keeps the server in the state the fault file asks for."""

    def __init__(self, argv: list[str], state: Path, export: Path, run_dir: Path):
        self.server = Server(argv, run_dir)
        self.state, self.export = state, export
        self.applied: Fault | None = None
        self.relay: Relay | None = None
        self.stopping = False

    def run(self) -> int:
        """Serve until SIGTERM; the server's exit code if it ended on its own."""
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        if self.applied is None and faults.read(self.state) is None:
            unfill(self.export)  # a ballast left by a container stopped while full
        self.server.start(self.server.original)
        try:
            while not self.stopping:
                wanted = self._wanted()
                if wanted != self.applied:
                    self._apply(wanted)
                if self.applied is None or self.applied.kind != "down":
                    process = self.server.process
                    if process is not None and process.poll() is not None:
                        print(f"filesim-nfs: the NFS server ended (exit {process.returncode})",
                              file=sys.stderr, flush=True)
                        return process.returncode or 1
                time.sleep(POLL)
        finally:
            self._undo()
            self.server.stop()
        return 0

    def _stop(self) -> None:
        self.stopping = True

    def _wanted(self) -> Fault | None:
        fault = faults.read(self.state)
        if fault is not None and not fault.active(time.time()):
            faults.write(self.state, None)  # its deadline passed: the NAS clears it itself
            return None
        return fault

    def _apply(self, fault: Fault | None) -> None:
        error = ""
        try:
            self._undo()
            base = self.server.original
            plain = fault is None or fault.kind in ("hang", "full")
            if plain and (not self.server.running or self.server.config != base):
                self.server.start(base)
            if fault is not None:
                if fault.kind == "down":
                    self.server.stop()
                elif fault.kind == "hang":
                    self.server.freeze()
                elif fault.kind == "readonly":
                    self.server.start(read_only(base))
                elif fault.kind == "full":
                    fill(self.export)
                else:  # slow, flaky: ganesha on loopback, the relay on the public port
                    inner = free_port()
                    self.server.start(behind_relay(base, inner))
                    value = fault.value or 0.0
                    self.relay = Relay(bind_of(base), port_of(base), inner,
                                       delay=value / 1000 if fault.kind == "slow" else 0.0,
                                       reset=value if fault.kind == "flaky" else 0.0)
        except (OSError, RuntimeError) as exc:
            error = str(exc)
            print(f"filesim-nfs: fault {fault.label if fault else 'clear'}: {exc}", file=sys.stderr,
                  flush=True)
        self.applied = fault
        record = {**(fault.to_json() if fault else {"kind": None}), "applied_at": time.time(),
                  "error": error}
        temp = self.state / f".{APPLIED_FILE}.tmp"
        temp.write_text(json.dumps(record))
        os.replace(temp, self.state / APPLIED_FILE)
        print(f"filesim-nfs: fault {fault.label if fault else 'cleared'}"
              + (f" (until {time.strftime('%H:%M:%S', time.localtime(fault.until))})"
                 if fault and fault.until else ""), file=sys.stderr, flush=True)

    def _undo(self) -> None:
        """End what the applied fault set up (the server's configuration is set by _apply)."""
        applied, self.applied = self.applied, None
        if applied is None:
            return
        if applied.kind == "hang":
            self.server.thaw()
        elif applied.kind == "full":
            unfill(self.export)
        if self.relay is not None:
            self.relay.stop()
            self.relay = None


# -- the commands ------------------------------------------------------------------------------

def request(state: Path, fault: Fault | None, timeout: float) -> dict[str, object]:
    """Ask for ``fault`` (None: clear) and wait until the supervisor applied it."""
    faults.write(state, fault)
    wanted = fault.to_json() if fault else {"kind": None}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            applied = json.loads((state / APPLIED_FILE).read_text())
        except (OSError, ValueError):
            applied = {"kind": None} if fault is None else {}
        if all(applied.get(k) == v for k, v in wanted.items()):
            return {"ok": not applied.get("error"), **applied}
        time.sleep(POLL / 2)
    return {"ok": False, "error": f"the NFS server's supervisor did not apply it within {timeout:.0f}s"}


def alive(config: Path, state: Path) -> bool:
    """The liveness probe: the server answers on its port, or a fault says it must not."""
    applied = faults.read(state, APPLIED_FILE)
    if applied is not None and applied.kind in ("down", "hang"):
        return True
    text = config.read_text()
    try:
        with socket.create_connection(("127.0.0.1", port_of(text)), timeout=3):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """``filesim-nfs``: run the server under supervision, ask for a fault, or probe."""
    parser = argparse.ArgumentParser(prog="filesim-nfs", description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True, help="the NAS's state folder")
    parser.add_argument("--export", type=Path, default=Path("/export"))
    parser.add_argument("--run-dir", type=Path, default=Path("/run/ganesha"))
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the server command after --")
    run.add_argument("server", nargs=argparse.REMAINDER)
    fault = commands.add_parser("fault", help="set or clear a fault and wait until it is applied")
    fault.add_argument("action", choices=["set", "clear", "show"])
    fault.add_argument("kind", nargs="?")
    fault.add_argument("--value", type=float)
    fault.add_argument("--for", dest="duration", type=float, help="seconds, by this NAS's clock")
    fault.add_argument("--timeout", type=float, default=120.0)
    commands.add_parser("alive", help="exit 0 while the server is as it should be")
    args = parser.parse_args(argv)
    if args.command == "run":
        server = args.server[1:] if args.server[:1] == ["--"] else args.server
        return Supervisor(server, args.state, args.export, args.run_dir).run()
    if args.command == "alive":
        return 0 if alive(args.run_dir / WORKING_CONFIG, args.state) else 1
    if args.action == "show":
        applied = faults.read(args.state, APPLIED_FILE)
        print(json.dumps(applied.to_json() if applied else None))
        return 0
    until = time.time() + args.duration if args.duration else None
    wanted = None if args.action == "clear" else Fault(args.kind, args.value, until)
    result = request(args.state, wanted, args.timeout)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
