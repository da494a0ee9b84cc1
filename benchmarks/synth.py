"""Synth time of filesim against a bare cdk8s app with as many Deployments and Services.

Whole process (what `invoke synth` costs a user: Python, cdk8s and its Node runtime start, values,
constructs, synth) as the median of fresh processes, plus the in-process construct+synth time
after a warm-up. Usage: python benchmarks/synth.py [--repeat N] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from common import require


def topology(count: int):
    """Default topology for 7; otherwise ``count`` output NAS servers."""
    from filesim import values

    if count == 7:
        return values.load([])
    raw = {"nasServers": [{"name": f"nas-output-{i:03}",
                           "service": {"clusterIP": f"10.96.{100 + i // 200}.{i % 200 + 1}"},
                           "podman": {"port": 21000 + i}} for i in range(count)]}
    return values.from_dict(raw)


def filesim_synth(count: int) -> int:
    """Load values and synthesize every manifest; return the object count."""
    from filesim.manifests import Target, manifests

    return sum(len(m.objects) for m in manifests(topology(count), Target.KUBERNETES))


def bare_synth(count: int) -> int:
    """A bare cdk8s app: ``count`` one-container Deployments and Services."""
    from filesim.manifests import cdk8s, k8s

    app = cdk8s.App()
    chart = cdk8s.Chart(app, "bare")
    for i in range(count):
        labels = {"app": f"nas-{i}"}
        k8s.KubeDeployment(chart, f"d{i}", spec=k8s.DeploymentSpec(
            selector=k8s.LabelSelector(match_labels=labels),
            template=k8s.PodTemplateSpec(metadata=k8s.ObjectMeta(labels=labels), spec=k8s.PodSpec(
                containers=[k8s.Container(name="nfs", image="localhost/filesim-nas:0.1.0")]))))
        k8s.KubeService(chart, f"s{i}", spec=k8s.ServiceSpec(selector=labels, ports=[
            k8s.ServicePort(port=2049)]))
    return len(cdk8s.Testing.synth(chart))


APPS = {"filesim": filesim_synth, "bare": bare_synth}


def process_seconds(app: str, count: int, repeat: int) -> float:
    """Median wall time of fresh processes running one synth."""
    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--once", app, str(count)], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])  # the first run warms the OS file cache


def in_process_seconds(app: str, count: int, repeat: int) -> float:
    """Median time of construct+synth in this process after a warm-up."""
    APPS[app](count)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        APPS[app](count)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one run each: a check, no figures")
    parser.add_argument("--once", nargs=2, metavar=("APP", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        APPS[args.once[0]](int(args.once[1]))
        return
    require("node")
    if args.smoke:
        args.repeat = 1
    print(f"`python benchmarks/synth.py --repeat {args.repeat}`"
          f"{' (smoke: not figures)' if args.smoke else ''}\n")
    print(f"{'NAS':>4}  {'process: filesim':>16}  {'bare':>6}  {'ratio':>5}  |  "
          f"{'in-process: filesim':>19}  {'bare':>6}  {'ratio':>5}")
    for count in (7, 100):
        p_ours = process_seconds("filesim", count, args.repeat)
        p_bare = process_seconds("bare", count, args.repeat)
        i_ours = in_process_seconds("filesim", count, args.repeat)
        i_bare = in_process_seconds("bare", count, args.repeat)
        print(f"{count:>4}  {p_ours:>15.2f}s  {p_bare:>5.2f}s  {p_ours / p_bare:>4.2f}x  |  "
              f"{i_ours:>18.3f}s  {i_bare:>5.3f}s  {i_ours / i_bare:>4.2f}x")


if __name__ == "__main__":
    main()
