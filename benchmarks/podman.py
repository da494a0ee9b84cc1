"""The podman engine: image build from nothing, deploy to all-ready, idle RSS, check-sync latency.

Prints a Markdown table. Removes the NAS image first unless --keep-image (then the build
figure is skipped) and tears the deployment down at the end.
Usage: python benchmarks/podman.py [--runs 20] [--keep-image]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from filesim import image, toolkit
from filesim.checks import check_sync


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


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep-image", action="store_true")
    args = parser.parse_args()
    data_root = Path(tempfile.mkdtemp(prefix="filesim-bench-data-"))
    engine = toolkit.engine("podman", [], [], str(data_root))
    rows = []
    if not args.keep_image:
        engine.destroy(quiet)
        engine.run(["podman", "rmi", "--force", engine.image_ref], check=False)
        started = time.monotonic()
        image.ensure(engine.run, engine.image_ref, progress=quiet)
        rows.append(("image build from nothing (debootstrap + import)", f"{time.monotonic() - started:.1f} s",
                     "≤ 120 s"))
    engine.setup(quiet)
    try:
        started = time.monotonic()
        engine.apply(quiet)
        engine.wait_ready(120, quiet)
        rows.append((f"deploy of {len(engine.servers())} NAS servers to all-ready",
                     f"{time.monotonic() - started:.1f} s", "≤ 20 s"))
        time.sleep(10)
        rss = [pod_rss_mib(engine, nas.name) for nas in engine.servers()]
        rows.append(("idle RSS per NAS pod (ganesha, agent, 2 tini, catatonit), max of 7",
                     f"{max(rss):.1f} MiB (min {min(rss):.1f})", "≤ 96 MiB"))
        results = [check_sync(engine, "nas-backup", 30) for _ in range(args.runs)]
        for direction in ("nfs_to_windows", "windows_to_nfs"):
            seconds = [r["directions"][direction]["seconds"] for r in results
                       if r["directions"][direction]["status"] == "passed"]
            rows.append((f"check-sync nas-backup {direction.replace('_', ' ')} "
                         f"({len(seconds)}/{args.runs} passed)",
                         f"p50 {statistics.median(seconds):.2f} s, p99 {p99(seconds):.2f} s", ""))
    finally:
        engine.destroy(quiet)
    print("| measure | figure | target |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
