"""The podman engine: image build, deploy, idle RSS, check-sync, fault costs, a NAS of 250k files.

Prints a Markdown table. Runs its own deployments (benchmarks/podman-values.yaml) and removes
them at the end; the image build is timed under a tag of its own, so running pods keep theirs.
The big NAS is deployed with default values but its folder: every file must reach the export,
no container may restart or be OOM-killed, and each agent's peak RSS (VmHWM, which it reports)
is set against its container's memory limit.
Usage: python benchmarks/podman.py [--runs 20] [--keep-image] [--big-files 250000] [--smoke]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import percentile, require

from filesim import image, toolkit
from filesim.checks import check_sync
from filesim.nas.faults import Fault
from filesim.quantity import to_bytes
from filesim.sync.status import SEED_FILE, read_status

VALUES = Path(__file__).with_name("podman-values.yaml")


def quiet(_: str) -> None:
    pass


def pod_rss_mib(engine, nas: str) -> float:
    """Resident memory of the processes of one NAS pod (ganesha, agent, tini), from /proc."""
    # hpid: host PIDs (plain `pid` is the PID inside each container's namespace)
    pids = engine.run(["podman", "pod", "top", engine.pod_name(nas), "hpid"], reads_only=True)
    total = 0
    for pid in pids.stdout.split()[1:]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def big_nas(files: int) -> list[tuple[str, str, str]]:
    """Deploy one NAS (nas-backup, default values) whose folder holds ``files`` files of 1 KiB."""
    data_root = Path(tempfile.mkdtemp(prefix="filesim-bench-big-"))
    sets = ["namespace=filesim-bench-big", "namePrefix=big-",
            *(f"nasServers[{n}].enabled=false" for n in ("nas-input-1", "nas-input-2", "nas-input-3",
                                                        "nas-output-1", "nas-output-2", "nas-output-3"))]
    engine = toolkit.engine("podman", [str(VALUES)], sets, str(data_root), need_data_root=False)
    [nas] = engine.servers()
    engine.setup(quiet)
    folder = data_root / nas.name
    payload = b"x" * 1024
    for i in range(files):
        sub = folder / f"d{i // 500:04}"
        if i % 500 == 0:
            sub.mkdir()
        (sub / f"f{i:06}.dat").write_bytes(payload)
    rows = []
    try:
        started = time.monotonic()
        engine.apply(toolkit.progress)  # the seed's progress, as deploy shows it
        engine.wait_ready(600, toolkit.progress)
        rows.append((f"deploy of a NAS of {files:,} files of 1 KiB (default values), to ready",
                     f"{time.monotonic() - started:.0f} s", "progress shown, no stall"))
        state = Path(engine._node_dir(nas.name), "state")
        seed = read_status(state, SEED_FILE) or {}
        export = Path(engine._node_dir(nas.name), "export")
        on_export = sum(1 for _ in export.rglob("*.dat"))
        restarts = {c: engine.run(["podman", "inspect", "--format", "{{.RestartCount}} {{.State.OOMKilled}}",
                                   engine._container(nas.name, c)], reads_only=True).stdout.split()
                    for c in ("sync", "nfs")}
        rows.append(("files on the export, seed problems", f"{on_export:,} of {files:,}, "
                     f"{seed.get('errors', '?')} problems", "all, 0"))
        rows.append(("restarts / OOM kills (sync, nfs)",
                     ", ".join(f"{c} {r[0]} / {r[1]}" for c, r in restarts.items()), "0 / false"))
        seed_limit = to_bytes(nas.seed_resources.limits["memory"]) / 2**20
        rows.append(("seed peak RSS (VmHWM)", f"{seed.get('peak_rss_mib', 0):.0f} MiB = "
                     f"{seed.get('peak_rss_mib', 0) / seed_limit:.0%} of its {seed_limit:.0f} MiB",
                     "≤ 75 %"))
        engine.agent_request(nas.name, "barrier", 600)  # a full pass over every file
        agent = read_status(state) or {}
        sync_limit = to_bytes(nas.sidecar_resources.limits["memory"]) / 2**20
        rows.append(("sync agent peak RSS after a full pass", f"{agent.get('peak_rss_mib', 0):.0f} MiB "
                     f"= {agent.get('peak_rss_mib', 0) / sync_limit:.0%} of its {sync_limit:.0f} MiB",
                     "≤ 75 %"))
    finally:
        engine.destroy(quiet, force=True)
        shutil.rmtree(data_root)
    return rows


def nfs_reads(engine, nas: str, runs: int) -> list[float]:
    """Seconds of ``runs`` libnfs reads of one small file, each timed inside one client container."""
    port = engine.server(nas).podman_port
    url = f"nfs://127.0.0.1/export/bench-read.bin?version=4&nfsport={port}"  # as nfs_write wrote it
    # nfs-cp does not overwrite a local file either
    script = "; ".join(['rm -f /tmp/o; s=$(date +%s%N); nfs-cp "$U" /tmp/o >/tmp/said 2>&1 || '
                        '{ cat /tmp/said; exit 1; }; e=$(date +%s%N); echo $(( (e - s) / 1000 ))'] * runs)
    result = engine.run(["podman", "run", "--rm", "--network", "host", "-e", f"U={url}",
                         engine.image_ref, "sh", "-c", script], reads_only=True, check=False)
    if result.returncode != 0:
        said = result.stdout.strip().splitlines()[-1:] or ["no output"]
        sys.exit(f"{sys.argv[0]}: an NFS read of {nas} failed ({said[0]}); see `invoke status "
                 f"--values {VALUES}`")
    return [int(line) / 1e6 for line in result.stdout.split()]


def fault_costs(engine, runs: int) -> list[tuple[str, str, str]]:
    """What the fault machinery costs an NFS client: nothing while no fault is on (#22)."""
    nas = "nas-backup"
    engine.nfs_write(nas, "bench-read.bin", b"x" * 4096)  # once: nfs-cp does not overwrite
    before = statistics.median(nfs_reads(engine, nas, runs))
    engine.set_fault(nas, Fault("slow", 1.0))
    relayed = statistics.median(nfs_reads(engine, nas, runs))
    engine.set_fault(nas, None)
    after = statistics.median(nfs_reads(engine, nas, runs))
    return [
        (f"NFS read of 4 KiB, no fault ever ({runs} runs, median)", f"{before * 1000:.1f} ms",
         "baseline"),
        ("  the same through the relay of slow=1 (1 ms per reply added)",
         f"{relayed * 1000:.1f} ms ({relayed / before:.2f}x)", ""),
        ("  the same after the fault was cleared", f"{after * 1000:.1f} ms ({after / before:.2f}x)",
         "≤ 1.05x"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep-image", action="store_true", help="skip the build from nothing")
    parser.add_argument("--big-files", type=int, default=250_000,
                        help="files of the big NAS (0: skip it)")
    parser.add_argument("--smoke", action="store_true", help="2 runs, no build: a check, no figures")
    args = parser.parse_args()
    if args.smoke:
        args.big_files = min(args.big_files, 1000)
    require("podman", "debootstrap")
    runs = 2 if args.smoke else args.runs
    data_root = Path(tempfile.mkdtemp(prefix="filesim-bench-data-"))
    engine = toolkit.engine("podman", [str(VALUES)], [], str(data_root))
    rows = []
    if not (args.keep_image or args.smoke):
        scratch = f"{engine.values.image.repository}:bench-build"
        engine.run(["podman", "rmi", scratch], check=False)
        started = time.monotonic()
        image.build(engine.run, scratch, image.inputs_digest(), progress=quiet)
        rows.append(("image build from nothing (debootstrap + import)",
                     f"{time.monotonic() - started:.1f} s", "≤ 120 s"))
        engine.run(["podman", "rmi", scratch], check=False)
    engine.setup(quiet)
    try:
        started = time.monotonic()
        engine.apply(quiet)
        engine.wait_ready(120, quiet)
        rows.append((f"deploy of {len(engine.servers())} NAS servers to all-ready",
                     f"{time.monotonic() - started:.1f} s", "≤ 20 s"))
        time.sleep(1 if args.smoke else 10)
        rss = [pod_rss_mib(engine, nas.name) for nas in engine.servers()]
        rows.append(("idle RSS per NAS pod (ganesha, agent, 2 tini, catatonit), max of 7",
                     f"{max(rss):.1f} MiB (min {min(rss):.1f})", "≤ 96 MiB"))
        results = [check_sync(engine, "nas-backup", 30) for _ in range(runs)]
        for direction in ("nfs_to_windows", "windows_to_nfs"):
            seconds = [r["directions"][direction]["seconds"] for r in results
                       if r["directions"][direction]["status"] == "passed"]
            if len(seconds) < runs:
                sys.exit(f"{sys.argv[0]}: check-sync {direction} failed {runs - len(seconds)} of "
                         f"{runs} times; see `invoke status --values {VALUES}`")
            rows.append((f"check-sync nas-backup {direction.replace('_', ' ')} ({runs} runs)",
                         f"p50 {statistics.median(seconds):.2f} s, p99 {percentile(seconds, .99):.2f} s",
                         ""))
        rows += fault_costs(engine, runs)
    finally:
        engine.destroy(quiet, force=True)
        shutil.rmtree(data_root)  # the NAS folders this run made (destroy keeps a tester's)
    if args.big_files:
        rows += big_nas(args.big_files)
    print(f"`python benchmarks/podman.py{' --smoke' if args.smoke else ''}` "
          f"({'smoke: not figures' if args.smoke else f'{runs} check-sync runs'})\n")
    print("| measure | figure | target |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
