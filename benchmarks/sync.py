"""The sync agent against the research's rsync loop, on the same trees, in one run.

Prints Markdown tables: latency NFS→Windows and Windows→NFS (p50/p99 over N changes) with and
without the host watcher, idle CPU and RSS at each tree size in both modes, the initial sync of
a tree by the daemon and by `--once` against `cp -a`, seeding a ~1 GB mixed tree, and seeding
over a 9p-like share (the tests' FUSE share with a delay per operation, each one counted)
against `tar | tar` over the same share. The other sections' sides are local folders.

A baseline that fails while running stops the benchmark with one line; "never" is printed only
for what was observed: the research loop's --delete removing a file written on Windows.

Usage: python benchmarks/sync.py [--changes N] [--latency-files 10000,100000]
                                 [--sizes 1000,10000,100000] [--initial-files N]
                                 [--idle-seconds S] [--seed-mb MB] [--share-files N]
                                 [--share-delay-ms MS] [--only SECTIONS] [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
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

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "support"))
from harness import NinePShare

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


class Workspaces:
    """Trees of N files agreed on both sides, made once per size and removed at the end."""

    def __init__(self):
        self.made: dict[int, tuple[Path, Path, Path, Path]] = {}

    def get(self, files: int) -> tuple[Path, Path, Path, Path]:
        """(base, nfs, windows, state) with ``files`` files agreed on both sides."""
        if files not in self.made:
            base = Path(tempfile.mkdtemp(prefix="filesim-bench-"))
            nfs, windows, state = base / "nfs", base / "windows", base / "state"
            for path in (nfs, windows):
                path.mkdir()
            (windows / MARKER).write_text("filesim share marker\nid: bench\n")
            make_tree(windows, files)
            subprocess.run([*AGENT, "--nfs", nfs, "--windows", windows, "--state", state, "--mode",
                            "bidirectional", "--once", "--log-format", "json"], check=True,
                           stdout=subprocess.DEVNULL)
            self.made[files] = (base, nfs, windows, state)
        return self.made[files]

    def drop(self, files: int) -> None:
        """Remove one tree: the research loop's --delete has emptied its Windows side's extras."""
        base, *_ = self.made.pop(files)
        shutil.rmtree(base, ignore_errors=True)

    def remove(self) -> None:
        """Remove every tree made."""
        for files in list(self.made):
            self.drop(files)



def fresh_run(base: Path, mode: str) -> tuple[Path, Path]:
    """Empty destination and state folders for one run of ``mode`` (not yet made)."""
    dest, state = base / f"dest-{mode}", base / f"state-{mode}"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    return dest, state

def start_agent(nfs: Path, windows: Path, state: Path, interval: float = 2.0) -> subprocess.Popen:
    """An agent over an agreed tree; returns once its first pass is done and nothing is pending.

    The research loop's passes before it set every Windows mtime to the NFS copy's (the agent
    does not carry mtimes over), so a new agent first re-agrees every file: measurements
    start after that catch-up.
    """
    proc = subprocess.Popen([*AGENT, "--nfs", nfs, "--windows", windows, "--state", state, "--mode",
                             "bidirectional", "--interval", str(interval), "--log-format", "json"],
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while (status := _status(state)).get("pid") != proc.pid or not status.get("last_full_pass") \
            or status.get("pending"):
        if time.monotonic() > deadline or proc.poll() is not None:
            fail("the agent did not start (or did not agree the tree in 15 minutes)")
        time.sleep(0.05)
    return proc


def start_watcher(windows: Path, state: Path) -> subprocess.Popen:
    """The host watcher over ``windows``; returns once the agent relies on its hints."""
    proc = subprocess.Popen([sys.executable, "-m", "filesim.watch", "--state",
                             str(windows.parent / "watch.json"), str(windows)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _status(state).get("windows_changes") != "journal":
        if time.monotonic() > deadline or proc.poll() is not None:
            fail("the host watcher did not start (or the agent did not take its hints)")
        time.sleep(0.1)
    return proc


def _status(state: Path, name: str = "status.json") -> dict:
    try:
        return json.loads((state / name).read_text())
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


#: Each measurement writes names of its own: a late deletion from the one before cannot touch them.
RUNS = itertools.count()


class Latencies:
    """Seconds from writing each file into one side to seeing it whole on the other."""

    def __init__(self, what: str, seconds: list[float], deleted: int, missing: int):
        self.what, self.seconds, self.deleted, self.missing = what, seconds, deleted, missing

    def cell(self) -> str:
        """p50 / p99, or "never" with what was observed."""
        if self.missing:
            fail(f"{self.what}: {self.missing} changes neither arrived nor were deleted: a broken run")
        if self.deleted:
            return f"never (its --delete removed {self.deleted} of {self.deleted + len(self.seconds)})"
        return f"{percentile(self.seconds, .5):.2f} s / {percentile(self.seconds, .99):.2f} s"


def latencies(what: str, source: Path, dest: Path, changes: int, spread: float, timeout: float
              ) -> Latencies:
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
    run = next(RUNS)
    for i in range(changes):
        name = f"change-{run:02}-{source.name}-{i:03}.txt"
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
    return Latencies(f"{what}, {source.name} → {dest.name}", seconds, len(vanished),
                     changes - len(arrived) - len(vanished))


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its helpers (tail, inotifywait: live ones and reaped ones)."""
    return _cpu_ticks(pid) / os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, and those of reaped children
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):  # ended meanwhile: its parent's counts have it
                ticks += _cpu_ticks(int(child))
    return ticks


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib(pid: int) -> float:
    return rss_mib(pid, "VmHWM")


def bench_latency(args, spaces: Workspaces) -> list[str]:
    rows = []
    for files in args.latency_files:
        _, nfs, windows, state = spaces.get(files)
        agent = start_agent(nfs, windows, state)
        what = f"{files:,} files, polling"
        n2w = latencies(what, nfs, windows, args.changes, spread=args.changes * 0.3, timeout=30)
        w2n = latencies(what, windows, nfs, args.changes, spread=args.changes * 0.3, timeout=60)
        rows.append(f"| {files:,} | filesim-sync, polling (interval 2 s, settle 0.5 s; "
                    f"now {_status(state).get('interval')} s) | {n2w.cell()} | {w2n.cell()} |")
        watcher = start_watcher(windows, state)
        what = f"{files:,} files, host watcher"
        n2w = latencies(what, nfs, windows, args.changes, spread=args.changes * 0.3, timeout=30)
        w2n = latencies(what, windows, nfs, args.changes, spread=args.changes * 0.3, timeout=30)
        stop(watcher)
        stop(agent)
        rows.append(f"| {files:,} | filesim-sync with the host watcher (settle 0.5 s) | "
                    f"{n2w.cell()} | {w2n.cell()} |")
        for interval in args.loops:
            loop = start_rsync_loop(nfs, windows, interval)
            what = f"{files:,} files, rsync loop {interval} s"
            # A pass of --delete may start just before a write: the next is a whole interval later.
            n2w = latencies(what, nfs, windows, args.changes,
                            spread=max(args.changes * 0.3, interval * 1.5), timeout=2 * interval + 30)
            w2n = latencies(what, windows, nfs, min(args.changes, 10), spread=5,
                            timeout=2 * interval + 30)
            stop(loop)
            rows.append(f"| {files:,} | research rsync loop, {interval} s | {n2w.cell()} | "
                        f"{w2n.cell()} |")
        spaces.drop(files)  # the loop deleted the share marker and the agent's journal
    return rows


def rsync_pass_seconds(nfs: Path, windows: Path) -> float:
    """CPU of one no-op `rsync -a --delete` pass (median of 3).

    The share marker and the agent's journal are excluded, so that the tree stays usable: the
    pass still reads both whole trees, which is its cost.
    """
    runs = []
    for _ in range(3):
        t0 = os.times()
        result = subprocess.run(["rsync", "-a", "--delete", f"--exclude=/{MARKER}", "--exclude=/.filesim",
                                 f"{nfs}/", f"{windows}/"],
                                capture_output=True, text=True)
        if result.returncode not in (0, 24):
            fail(f"rsync exited {result.returncode}: {result.stderr.strip()}")
        t1 = os.times()
        runs.append((t1.children_user - t0.children_user) + (t1.children_system - t0.children_system))
    return statistics.median(runs)


def _idle(pids: list[int], seconds: float) -> list[float]:
    """CPU share of one core each of ``pids`` used over ``seconds``."""
    before, started = [cpu_seconds(p) for p in pids], time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    return [(cpu_seconds(p) - b) / elapsed for p, b in zip(pids, before, strict=True)]


def bench_idle(args, spaces: Workspaces) -> list[str]:
    rows = []
    for files in args.sizes:
        _, nfs, windows, state = spaces.get(files)
        agent = start_agent(nfs, windows, state)
        time.sleep(min(5, args.idle_seconds))
        [polling] = _idle([agent.pid], args.idle_seconds)
        interval = _status(state).get("interval")
        watcher = start_watcher(windows, state)
        time.sleep(min(5, args.idle_seconds))
        hinted, watching = _idle([agent.pid, watcher.pid], args.idle_seconds)
        rss = rss_mib(agent.pid)
        stop(watcher)
        stop(agent)
        per_pass = rsync_pass_seconds(nfs, windows)
        rows.append(f"| {files:,} | {polling * 100:.2f} % ({interval} s) | {hinted * 100:.2f} % | "
                    f"{watching * 100:.2f} % | {rss:.1f} MiB | {per_pass / 2 * 100:.2f} % | "
                    f"{per_pass / 30 * 100:.2f} % |")
    return rows


def bench_initial(args) -> list[str]:
    """One fresh tree copied by `cp -a`, by `--once` and by the daemon (until all agreed).

    The three alternate, ``args.seed_runs`` times, each after `sync` (so no step pays for the
    previous one's writeback); medians are compared.
    """
    base = Path(tempfile.mkdtemp(prefix="filesim-initial-"))
    source = base / "windows"
    source.mkdir()
    (source / MARKER).write_text("filesim share marker\nid: bench\n")
    files = args.initial_files
    make_tree(source, files, per_folder=100)
    times: dict[str, list[float]] = {"cp": [], "once": [], "daemon": []}
    peaks, once_peaks = [], []
    try:
        for _ in range(args.seed_runs):
            for mode in times:
                dest, state = fresh_run(base, mode)
                os.sync()
                started = time.perf_counter()
                if mode == "cp":
                    subprocess.run(["cp", "-a", f"{source}/.", str(dest)], check=True)
                    times[mode].append(time.perf_counter() - started)
                    continue
                dest.mkdir()
                command = [*AGENT, "--nfs", dest, "--windows", source, "--state", state, "--mode",
                           "bidirectional", "--log-format", "json"]
                if mode == "once":
                    subprocess.run([*command, "--once"], check=True, stdout=subprocess.DEVNULL)
                    once_peaks.append((_status(state, "seed.json") or {}).get("peak_rss_mib", 0))
                else:
                    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
                    while not (_status(state).get("files_tracked", 0) >= files
                               and _status(state).get("pending") == 0):
                        if proc.poll() is not None:
                            fail("the agent exited during its initial sync")
                        time.sleep(0.1)
                    peaks.append(peak_rss_mib(proc.pid))
                    stop(proc)
                times[mode].append(time.perf_counter() - started)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    cp, once, daemon = (statistics.median(times[m]) for m in ("cp", "once", "daemon"))
    return [f"| {files:,} files in {files // 100:,} folders | {cp:.1f} s | {once:.1f} s "
            f"({once / cp:.2f}x cp) | {daemon:.1f} s ({daemon / once:.2f}x once) | "
            f"{max(once_peaks):.0f} MiB | {max(peaks):.0f} MiB |"]


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
            os.sync()
            started = time.perf_counter()
            subprocess.run(["cp", "-a", f"{source}/.", str(base / "cp")], check=True)
            cp_times.append(time.perf_counter() - started)
            for path in ("nfs", "state"):
                shutil.rmtree(base / path, ignore_errors=True)
            (base / "nfs").mkdir()
            os.sync()
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


def bench_share(args) -> list[str]:
    """Seeding over the 9p-like share: `--once` against `tar | tar`, and what reached the share.

    The share is the tests' FUSE passthrough with 9p's quirks and a delay per operation (a
    round trip through a VM's network); its counters say how many operations each file cost.
    9p answers FUSE's flush and release in one message (Tclunk): round trips = operations
    less the flushes. Alternating, median of ``args.seed_runs``.
    """
    base = Path(tempfile.mkdtemp(prefix="filesim-share-"))
    share = NinePShare(base, delay_ms=args.share_delay_ms)
    files = args.share_files
    try:
        make_tree(share.backing, files, per_folder=500)
        old = time.time() - 3600  # a folder the tester filled earlier
        for path in share.backing.rglob("*.dat"):
            os.utime(path, (old, old))
        times: dict[str, list[float]] = {"tar": [], "once": []}
        ops: dict[str, dict[str, int]] = {}
        for _ in range(args.seed_runs):
            for mode in times:
                dest, state = fresh_run(base, mode)
                dest.mkdir()
                os.sync()
                before = share.stats()["ops"]
                started = time.perf_counter()
                if mode == "tar":
                    subprocess.run(f"tar -C {share.mount} -cf - . | tar -C {dest} -xf -", shell=True,
                                   check=True)
                else:
                    subprocess.run([*AGENT, "--nfs", dest, "--windows", share.mount, "--state", state,
                                    "--mode", "to-nfs", "--once", "--log-format", "json"],
                                   check=True, stdout=subprocess.DEVNULL)
                times[mode].append(time.perf_counter() - started)
                time.sleep(0.3)  # the share writes its counters a few times a second
                after = share.stats()["ops"]
                ops[mode] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        copied = len(list((base / "dest-once").rglob("*.dat")))
        if copied != files:
            fail(f"--once copied {copied} of {files} files over the share")
    finally:
        share.stop()
        shutil.rmtree(base, ignore_errors=True)
    tar, once = statistics.median(times["tar"]), statistics.median(times["once"])

    def per_file(mode: str) -> str:
        total = sum(ops[mode].values())
        trips = total - ops[mode].get("flush", 0)
        top = ", ".join(f"{k} {v / files:.1f}" for k, v in sorted(ops[mode].items(),
                                                                    key=lambda kv: -kv[1]) if v)
        return f"{total / files:.1f} ({trips / files:.1f} round trips; {top})"
    return [f"| {files:,} files of 1 KiB, {args.share_delay_ms:g} ms per operation | {tar:.1f} s | "
            f"{once:.1f} s | {once / tar:.2f}x | {per_file('tar')} | {per_file('once')} |"]


SECTIONS = ("idle", "latency", "initial", "seed", "share")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sizes = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--latency-files", type=sizes, default=[10_000, 100_000])
    parser.add_argument("--sizes", type=sizes, default=[1_000, 10_000, 100_000])
    parser.add_argument("--initial-files", type=int, default=100_000)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--seed-mb", type=int, default=1024)
    parser.add_argument("--share-files", type=int, default=5000)
    parser.add_argument("--share-delay-ms", type=float, default=0.3)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--smoke", action="store_true", help="tiny trees, one run: a check, no figures")
    args = parser.parse_args()
    only = args.only.split(",")
    if unknown := sorted(set(only) - set(SECTIONS)):
        parser.error(f"unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    args.loops, args.seed_runs = [2, 30], 3
    if args.smoke:
        args.changes, args.latency_files, args.sizes, args.initial_files = 3, [100], [100], 200
        args.idle_seconds, args.seed_mb, args.loops, args.seed_runs = 1, 4, [1], 1
        args.share_files = 200
    require("rsync", "cp", "tar", "inotifywait", "fusermount3")
    if "share" in args.only.split(",") and importlib.util.find_spec("mfusepy") is None:
        fail("the share section needs mfusepy (the 9p-like share's FUSE binding): run it with "
             "`nox -s bench-sync`, which installs it")
    config = (f"--changes {args.changes} --latency-files {','.join(map(str, args.latency_files))} "
              f"--sizes {','.join(map(str, args.sizes))} --initial-files {args.initial_files} "
              f"--idle-seconds {args.idle_seconds:g} --seed-mb {args.seed_mb} "
              f"--share-files {args.share_files} --share-delay-ms {args.share_delay_ms:g} "
              f"--only {args.only}")
    print(f"`python benchmarks/sync.py {config}`{' (smoke: not figures)' if args.smoke else ''}\n")
    spaces = Workspaces()
    try:
        if "idle" in only:
            print(f"Idle cost over {args.idle_seconds:g} s (CPU as % of one core; the agent's RSS "
                  "with the watcher)\n")
            print("| files | agent polling (interval now) | agent with watcher | watcher | agent RSS | "
                  "rsync loop 2 s | rsync loop 30 s |")
            print("|---|---|---|---|---|---|---|")
            print("\n".join(bench_idle(args, spaces)), flush=True)
        if "latency" in only:
            print(f"\nLatency, write → whole on the other side, {args.changes} changes (p50 / p99)\n")
            print("| tree | sync | NFS → Windows | Windows → NFS |\n|---|---|---|---|")
            print("\n".join(bench_latency(args, spaces)), flush=True)
    finally:
        spaces.remove()
    if "initial" in only:
        print(f"\nInitial sync of a fresh tree (1 KiB files; median of {args.seed_runs}, each after "
              "`sync`; the daemon: until every file is agreed)\n")
        print("| tree | cp -a | --once | daemon | --once peak RSS | daemon peak RSS |\n"
              "|---|---|---|---|---|---|")
        print("\n".join(bench_initial(args)), flush=True)
    if "seed" in only:
        print(f"\nSeed (median of {args.seed_runs}, each after `sync`; `--once`, settle 0)\n")
        print("| tree | cp -a | filesim-sync --once | ratio |\n|---|---|---|---|")
        print("\n".join(bench_seed(args)), flush=True)
    if "share" in only:
        print(f"\nSeed over a 9p-like share (median of {args.seed_runs}, alternating; operations "
              "that reached the share per file)\n")
        print("| tree | tar \\| tar | filesim-sync --once | ratio | tar \\| tar ops | --once ops |\n"
              "|---|---|---|---|---|---|")
        print("\n".join(bench_share(args)))


if __name__ == "__main__":
    main()
