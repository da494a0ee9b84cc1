"""The sync agent against the research's rsync loop, on the same trees, in one run.

Prints Markdown tables: latency NFS→Windows and Windows→NFS (p50/p99 over N changes), idle CPU
and RSS at each tree size, and seeding a ~1 GB mixed tree against `cp -a`. Both sides are local
folders (the 9p share's extra cost per stat is not modelled here).

A baseline that fails while running stops the benchmark with one line; "never" is printed only
for what was observed: the research loop's --delete removing a file written on Windows.

Usage: python benchmarks/sync.py [--changes N] [--latency-files N] [--sizes 1000,10000,50000]
                                 [--idle-seconds S] [--seed-mb MB] [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import fail, percentile, require

MARKER = ".filesim-share"
AGENT = [sys.executable, "-m", "filesim.sync"]
#: The research's sidecar (rsync -a --delete NFS → Windows, sleep, forever), failing loudly:
#: exit codes 0 and 24 (files vanished meanwhile) are its normal passes.
RSYNC_LOOP = """
while true; do
  rsync -a --delete "$1/" "$2/" >/dev/null 2>&1
  rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 24 ]; then echo "rsync exited $rc" >&2; exit "$rc"; fi
  sleep "$3"
done
"""


def make_tree(root: Path, files: int, size: int = 1024, per_folder: int = 500) -> None:
    """``files`` files of ``size`` bytes in folders of ``per_folder``."""
    payload = os.urandom(size)
    for i in range(files):
        folder = root / f"d{i // per_folder:04}"
        if i % per_folder == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:06}.dat").write_bytes(payload)


def workspace(files: int) -> tuple[Path, Path, Path, Path]:
    """(base, nfs, windows, state) with ``files`` files agreed on both sides."""
    base = Path(tempfile.mkdtemp(prefix="filesim-bench-"))
    nfs, windows, state = base / "nfs", base / "windows", base / "state"
    for path in (nfs, windows):
        path.mkdir()
    (windows / MARKER).write_text("filesim share marker\nid: bench\n")
    make_tree(windows, files)
    subprocess.run([*AGENT, "--nfs", nfs, "--windows", windows, "--state", state, "--mode",
                    "bidirectional", "--once", "--log-format", "json"], check=True,
                   stdout=subprocess.DEVNULL)
    return base, nfs, windows, state


def start_agent(nfs: Path, windows: Path, state: Path, interval: float = 2.0) -> subprocess.Popen:
    proc = subprocess.Popen([*AGENT, "--nfs", nfs, "--windows", windows, "--state", state, "--mode",
                             "bidirectional", "--interval", str(interval), "--log-format", "json"],
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while _status(state).get("pid") != proc.pid or not _status(state).get("last_full_pass"):
        if time.monotonic() > deadline or proc.poll() is not None:
            fail("the agent did not start")
        time.sleep(0.05)
    return proc


def _status(state: Path) -> dict:
    try:
        return json.loads((state / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def start_rsync_loop(nfs: Path, windows: Path, interval: float) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", RSYNC_LOOP, "rsync-loop", str(nfs), str(windows),
                             str(interval)], start_new_session=True, stderr=subprocess.PIPE,
                            text=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.args[0] == "sh":
        if proc.poll() is not None:
            fail(f"the research rsync loop died: {proc.stderr.read().strip()}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.terminate()
    proc.wait(30)


class Latencies:
    """Seconds from writing each file into one side to seeing it whole on the other."""

    def __init__(self, seconds: list[float], deleted: int, missing: int):
        self.seconds, self.deleted, self.missing = seconds, deleted, missing

    def cell(self) -> str:
        """p50 / p99, or "never" with what was observed."""
        if self.missing:
            fail(f"{self.missing} changes neither arrived nor were deleted: a broken run")
        if self.deleted:
            return f"never (its --delete removed {self.deleted} of {self.deleted + len(self.seconds)})"
        return f"{percentile(self.seconds, .5):.2f} s / {percentile(self.seconds, .99):.2f} s"


def latencies(source: Path, dest: Path, changes: int, spread: float, timeout: float) -> Latencies:
    """Write ``changes`` files into ``source`` over ``spread`` seconds; time each to ``dest``."""
    written: dict[str, tuple[float, bytes]] = {}
    arrived: dict[str, float] = {}
    vanished: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for name, (_, data) in list(written.items()):
                if name in arrived or name in vanished:
                    continue
                with contextlib.suppress(OSError):
                    if (dest / name).read_bytes() == data:
                        arrived[name] = time.monotonic()
                        continue
                if not (source / name).exists():
                    vanished.add(name)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    rng = random.Random(7)
    for i in range(changes):
        name = f"change-{source.name}-{i:03}.txt"
        data = f"{name} {time.time()}\n".encode()
        (source / name).write_bytes(data)
        written[name] = (time.monotonic(), data)
        time.sleep(rng.uniform(0, 2 * spread / changes))
    deadline = time.monotonic() + timeout
    while len(arrived) + len(vanished) < changes and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    watcher.join()
    for name in written:
        (source / name).unlink(missing_ok=True)
    seconds = [arrived[n] - t for n, (t, _) in written.items() if n in arrived]
    return Latencies(seconds, len(vanished), changes - len(arrived) - len(vanished))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_latency(args) -> list[str]:
    rows = []
    base, nfs, windows, state = workspace(args.latency_files)
    try:
        agent = start_agent(nfs, windows, state)
        n2w = latencies(nfs, windows, args.changes, spread=args.changes * 0.3, timeout=10)
        w2n = latencies(windows, nfs, args.changes, spread=args.changes * 0.3, timeout=10)
        stop(agent)
        rows.append(f"| filesim-sync (interval 2 s, settle 0.5 s) | {n2w.cell()} | {w2n.cell()} |")
        for interval in args.loops:
            loop = start_rsync_loop(nfs, windows, interval)
            n2w = latencies(nfs, windows, args.changes, spread=max(args.changes * 0.3, interval * 1.5),
                            timeout=interval + 10)
            w2n = latencies(windows, nfs, min(args.changes, 10), spread=5, timeout=interval + 5)
            stop(loop)
            rows.append(f"| research rsync loop, {interval} s | {n2w.cell()} | {w2n.cell()} |")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows


def rsync_pass_seconds(nfs: Path, windows: Path) -> float:
    """CPU of one no-op `rsync -a --delete` pass (median of 3)."""
    runs = []
    for _ in range(3):
        t0 = os.times()
        result = subprocess.run(["rsync", "-a", "--delete", f"{nfs}/", f"{windows}/"],
                                capture_output=True, text=True)
        if result.returncode not in (0, 24):
            fail(f"rsync exited {result.returncode}: {result.stderr.strip()}")
        t1 = os.times()
        runs.append((t1.children_user - t0.children_user) + (t1.children_system - t0.children_system))
    return statistics.median(runs)


def bench_idle(args) -> list[str]:
    rows = []
    for files in args.sizes:
        base, nfs, windows, state = workspace(files)
        try:
            agent = start_agent(nfs, windows, state)
            time.sleep(min(5, args.idle_seconds))
            before, started = cpu_seconds(agent.pid), time.monotonic()
            time.sleep(args.idle_seconds)
            share = (cpu_seconds(agent.pid) - before) / (time.monotonic() - started)
            rss = rss_mib(agent.pid)
            stop(agent)
            per_pass = rsync_pass_seconds(nfs, windows)
            rows.append(f"| {files:,} | {share * 100:.2f} % | {rss:.1f} MiB | "
                        f"{per_pass / 2 * 100:.2f} % | {per_pass / 30 * 100:.2f} % |")
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return rows


def bench_seed(args) -> list[str]:
    base = Path(tempfile.mkdtemp(prefix="filesim-seed-"))
    source = base / "windows"
    source.mkdir()
    (source / MARKER).write_text("filesim share marker\nid: bench\n")
    big = args.seed_mb // 2
    for i in range(8):
        (source / f"big{i}.bin").write_bytes(os.urandom(big * 1024 * 1024 // 8))
    make_tree(source / "small", files=big * 10, size=100 * 1024)
    total = sum(f.stat().st_size for f in source.rglob("*") if f.is_file()) / 2**20
    cp_times, agent_times = [], []
    try:
        for _ in range(args.seed_runs):
            shutil.rmtree(base / "cp", ignore_errors=True)
            started = time.perf_counter()
            subprocess.run(["cp", "-a", f"{source}/.", str(base / "cp")], check=True)
            cp_times.append(time.perf_counter() - started)
            for path in ("nfs", "state"):
                shutil.rmtree(base / path, ignore_errors=True)
            (base / "nfs").mkdir()
            started = time.perf_counter()
            subprocess.run([*AGENT, "--nfs", base / "nfs", "--windows", source, "--state",
                            base / "state", "--mode", "to-nfs", "--once", "--settle", "0",
                            "--log-format", "json"], check=True, stdout=subprocess.DEVNULL)
            agent_times.append(time.perf_counter() - started)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    cp, agent = statistics.median(cp_times), statistics.median(agent_times)
    return [f"| {total:,.0f} MiB, {big * 10 + 8:,} files | {cp:.2f} s | {agent:.2f} s | "
            f"{agent / cp:.2f}x |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--latency-files", type=int, default=10_000)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1_000, 10_000, 50_000])
    parser.add_argument("--idle-seconds", type=float, default=20)
    parser.add_argument("--seed-mb", type=int, default=1024)
    parser.add_argument("--smoke", action="store_true", help="tiny trees, one run: a check, no figures")
    args = parser.parse_args()
    args.loops, args.seed_runs = [2, 30], 3
    if args.smoke:
        args.changes, args.latency_files, args.sizes = 3, 100, [100]
        args.idle_seconds, args.seed_mb, args.loops, args.seed_runs = 1, 4, [1], 1
    require("rsync", "cp")
    config = (f"--changes {args.changes} --latency-files {args.latency_files} --sizes "
              f"{','.join(map(str, args.sizes))} --idle-seconds {args.idle_seconds:g} "
              f"--seed-mb {args.seed_mb}")
    print(f"`python benchmarks/sync.py {config}`{' (smoke: not figures)' if args.smoke else ''}\n")
    print(f"Latency, write → whole on the other side, {args.changes} changes, "
          f"{args.latency_files:,}-file tree (p50 / p99)\n")
    print("| sync | NFS → Windows | Windows → NFS |\n|---|---|---|")
    print("\n".join(bench_latency(args)), flush=True)
    print(f"\nIdle cost over {args.idle_seconds:g} s (CPU as % of one core)\n")
    print("| files | agent CPU | agent RSS | rsync loop 2 s CPU | rsync loop 30 s CPU |")
    print("|---|---|---|---|---|")
    print("\n".join(bench_idle(args)), flush=True)
    print(f"\nSeed (median of {args.seed_runs}; `--once`, settle 0)\n")
    print("| tree | cp -a | filesim-sync --once | ratio |\n|---|---|---|---|")
    print("\n".join(bench_seed(args)))


if __name__ == "__main__":
    main()
