"""The podman engine: image build from nothing, deploy to all-ready, idle RSS, check-sync latency.

Prints a Markdown table. Runs its own deployment (benchmarks/podman-values.yaml) and removes it
at the end; the image build is timed under a tag of its own, so running pods keep theirs.
Usage: python benchmarks/podman.py [--runs 20] [--keep-image] [--smoke]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep-image", action="store_true", help="skip the build from nothing")
    parser.add_argument("--smoke", action="store_true", help="2 runs, no build: a check, no figures")
    args = parser.parse_args()
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
    finally:
        engine.destroy(quiet, force=True)
        shutil.rmtree(data_root)  # the NAS folders this run made (destroy keeps a tester's)
    print(f"`python benchmarks/podman.py{' --smoke' if args.smoke else ''}` "
          f"({'smoke: not figures' if args.smoke else f'{runs} check-sync runs'})\n")
    print("| measure | figure | target |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
