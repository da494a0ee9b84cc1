"""Engines run the same NAS constructs: podman here, minikube on the testers' laptops."""

from __future__ import annotations

import os
from pathlib import Path

from filesim.engines.base import Engine, EngineError, NasStatus, SharePaths
from filesim.model import Values
from filesim.run import Runner

ENGINES = ("auto", "podman", "minikube")

__all__ = ["ENGINES", "Engine", "EngineError", "NasStatus", "SharePaths", "select"]


def select(name: str | None, values: Values, runner: Runner, *, data_root: Path) -> Engine:
    """The engine named by ``--engine``, else ``FILESIM_ENGINE``, else the first usable one."""
    from filesim.engines import minikube, podman

    chosen = name or os.environ.get("FILESIM_ENGINE") or "auto"
    if chosen not in ENGINES:
        raise EngineError(f"unknown engine {chosen!r}; use one of: {', '.join(ENGINES)}")
    if chosen == "auto":
        if minikube.context_reachable(values.minikube.profile):
            chosen = "minikube"
        elif podman.usable(runner):
            chosen = "podman"
        else:
            raise EngineError("no engine found: run `invoke setup --engine minikube` (Windows, "
                              "macOS, Linux with minikube) or install podman with scripts/install.sh")
    if chosen == "minikube":
        return minikube.MinikubeEngine(values, runner)
    return podman.PodmanEngine(values, runner, data_root)
