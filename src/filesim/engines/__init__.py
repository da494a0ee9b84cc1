"""Engines run the same NAS constructs: podman here, any Kubernetes cluster, minikube on laptops.

``ENGINES`` is the one list of them: the tasks' help, ``select`` and the e2e suite read it.
"""

from __future__ import annotations

import os
from pathlib import Path

from filesim.engines.base import Engine, EngineError, NasStatus, SharePaths
from filesim.errors import BadInput
from filesim.model import Values
from filesim.run import Runner

#: name → what it is for (the order is the order `auto` tries them in).
ENGINES = {
    "minikube": "a minikube profile with the data root mounted (Windows laptops)",
    "podman": "podman kube play on this Linux machine (CI, no cluster)",
    "kubernetes": "any cluster a kube context reaches (--context; Docker Desktop, kind, k3d, a team's)",
}

__all__ = ["ENGINES", "Engine", "EngineError", "NasStatus", "SharePaths", "select"]


def select(name: str | None, values: Values, runner: Runner, *, data_root: Path,
           context: str | None = None) -> Engine:
    """The engine named by ``--engine``, else ``FILESIM_ENGINE``, else the first usable one."""
    from filesim.engines import kubernetes, minikube, podman

    chosen = name or os.environ.get("FILESIM_ENGINE") or "auto"
    if chosen != "auto" and chosen not in ENGINES:
        raise BadInput(f"unknown engine {chosen!r}; use one of: auto, {', '.join(ENGINES)}")
    if chosen == "auto":
        if kubernetes.context_reachable(context or values.minikube.profile):
            chosen = "minikube" if context is None else "kubernetes"
        elif podman.usable(runner):
            chosen = "podman"
        else:
            raise EngineError("no engine found: run `invoke setup --engine minikube` (Windows, "
                              "macOS, Linux with minikube), pass --engine kubernetes --context NAME "
                              "for a cluster you have, or install podman with scripts/install.sh")
    if chosen == "minikube":
        return minikube.MinikubeEngine(values, runner, context)
    if chosen == "kubernetes":
        return kubernetes.KubernetesEngine(values, runner, context)
    return podman.PodmanEngine(values, runner, data_root)
