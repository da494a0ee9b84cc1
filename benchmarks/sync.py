"""The sync agent against the research's rsync loop, on the same trees, in one run.

Prints a Markdown table: latency NFS→Windows and Windows→NFS (p50/p99 over N changes), idle CPU
and RSS at 1k, 10k and 50k files, and seeding a ~1 GB mixed tree against `cp -a`.
Both sides are local folders (the 9p share's extra cost per stat is not modelled here).

Usage: python benchmarks/sync.py [--changes N] [--sizes 1000,10000,50000] [--seed-mb 1024]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MARKER = ".filesim-share"
AGENT = [sys.executable, "-m", "filesim.sync"]


def make_tree(root: Path, files: int, size: int = 1024) -> None:
    """``files`` files of ``size`` bytes in folders of 500."""
    payload = os.urandom(size)
    for i in range(files):
        folder = root / f"d{i // 500:03}"
        if i % 500 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:06}.dat").write_bytes(payload)


def workspace(files: int) -> tuple[Path, Path, Path, Path]:
    """(base, nfs, windows, state) with ``files`` files agreed on both sides."""
    base = Path(tempfile.mkdtemp(prefix="filesim-bench-"))
    nfs, windows, state = base / "nfs", base / "windows", base / "state"
    for path in (nfs, windows):
        path.mkdir()
    (windows / MARKER).write_text("")
    make_tree(windows, files)
    subprocess.run([*AGENT, "--nfs", nfs, "--windows", windows, "--state", state, "--mode",
                    "bidirectional", "--once", "--log-format", "json"], check=True,
                   stdout=subprocess.DEVNULL)
    return base, nfs, windows, state


def start_agent(nfs: Path, windows: Path, state: Path, interval: float = 2.0) -> subprocess.Popen:
    proc = subprocess.Popen([*AGENT, "--nfs", nfs, "--windows", windows, "--state", state, "--mode",
                             "bidirectional", "--interval", str(interval), "--log-format", "json"],
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (state / "status.json").exists() or _status_pid(state) != proc.pid:
        if time.monotonic() > deadline:
            raise RuntimeError("agent did not start")
        time.sleep(0.05)
    return proc


def _status_pid(state: Path) -> int | None:
    import json

    try:
        return json.loads((state / "status.json").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def start_rsync_loop(nfs: Path, windows: Path, interval: float) -> subprocess.Popen:
    """The research's sidecar: rsync -av --delete NFS → Windows, then sleep, forever."""
    script = f'while true; do rsync -a --delete "{nfs}/" "{windows}/" >/dev/null 2>&1; sleep {interval}; done'
    return subprocess.Popen(["sh", "-c", script], start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15) if proc.args[0] == "sh" else proc.terminate()
    proc.wait(10)


def latencies(source: Path, dest: Path, changes: int, spread: float, timeout: float) -> list[float]:
    """Seconds from writing each of ``changes`` files into ``source`` to seeing it in ``dest``.

    Writes are spread over ``spread`` seconds; a file that never arrives counts as infinite.
    """
    written: dict[str, tuple[float, bytes]] = {}
    arrived: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for name, (_, data) in list(written.items()):
                if name not in arrived:
                    try:
                        if (dest / name).read_bytes() == data:
                            arrived[name] = time.monotonic()
                    except OSError:
                        pass
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
    while len(arrived) < changes and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    watcher.join()
    for name in written:
        (source / name).unlink(missing_ok=True)
    return [arrived[n] - t if n in arrived else float("inf") for n, (t, _) in written.items()]


def p(values: list[float], q: float) -> str:
    ordered = sorted(values)
    value = ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
    return "never" if value == float("inf") else f"{value:.2f}s"


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
        rows.append(f"| filesim-sync (interval 2 s, settle 0.5 s) | {p(n2w, .5)} / {p(n2w, .99)} "
                    f"| {p(w2n, .5)} / {p(w2n, .99)} |")
        for interval in (2, 30):
            loop = start_rsync_loop(nfs, windows, interval)
            n2w = latencies(nfs, windows, args.changes, spread=max(20, interval * 1.5),
                            timeout=interval + 10)
            w2n = latencies(windows, nfs, min(args.changes, 10), spread=5, timeout=interval + 5)
            stop(loop)
            rows.append(f"| research rsync loop, {interval} s | {p(n2w, .5)} / {p(n2w, .99)} | "
                        f"{p(w2n, .5)} / {p(w2n, .99)} (its --delete removes them) |")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows


def bench_idle(args) -> list[str]:
    rows = []
    for files in args.sizes:
        base, nfs, windows, state = workspace(files)
        try:
            agent = start_agent(nfs, windows, state)
            time.sleep(5)
            before, started = cpu_seconds(agent.pid), time.monotonic()
            time.sleep(args.idle_seconds)
            share = (cpu_seconds(agent.pid) - before) / (time.monotonic() - started)
            rss = rss_mib(agent.pid)
            stop(agent)
            runs = []
            for _ in range(3):
                t0 = os.times()
                subprocess.run(["rsync", "-a", "--delete", f"{nfs}/", f"{windows}/"], check=True)
                t1 = os.times()
                runs.append((t1.children_user - t0.children_user) + (t1.children_system - t0.children_system))
            per_pass = statistics.median(runs)
            rows.append(f"| {files:,} | {share * 100:.2f} % | {rss:.1f} MiB | "
                        f"{per_pass / 2 * 100:.2f} % | {per_pass / 30 * 100:.2f} % |")
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return rows


def bench_seed(args) -> list[str]:
    base = Path(tempfile.mkdtemp(prefix="filesim-seed-"))
    source = base / "windows"
    source.mkdir()
    (source / MARKER).write_text("")
    big = args.seed_mb // 2
    for i in range(8):
        (source / f"big{i}.bin").write_bytes(os.urandom(big * 1024 * 1024 // 8))
    make_tree(source / "small", files=big * 10, size=100 * 1024)
    total = sum(f.stat().st_size for f in source.rglob("*") if f.is_file()) / 2**20
    cp_times, agent_times = [], []
    try:
        for _ in range(3):
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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--latency-files", type=int, default=10_000)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1_000, 10_000, 50_000])
    parser.add_argument("--idle-seconds", type=float, default=20)
    parser.add_argument("--seed-mb", type=int, default=1024)
    args = parser.parse_args()
    print(f"Latency, write → visible on the other side, {args.changes} changes, "
          f"{args.latency_files:,}-file tree (p50 / p99)\n")
    print("| sync | NFS → Windows | Windows → NFS |\n|---|---|---|")
    print("\n".join(bench_latency(args)), flush=True)
    print(f"\nIdle cost over {args.idle_seconds:.0f} s (CPU as % of one core)\n")
    print("| files | agent CPU | agent RSS | rsync loop 2 s CPU | rsync loop 30 s CPU |")
    print("|---|---|---|---|---|")
    print("\n".join(bench_idle(args)), flush=True)
    print("\nSeed (median of 3; `--once`, settle 0)\n")
    print("| tree | cp -a | filesim-sync --once | ratio |\n|---|---|---|---|")
    print("\n".join(bench_seed(args)))


if __name__ == "__main__":
    main()
