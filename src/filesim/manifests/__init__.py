"""Values → cdk8s constructs → manifest files, for the kubernetes and podman targets.

Importing the package is cheap: cdk8s, and the Node.js runtime it starts, load on first use of
the app's names (``synth``, ``manifests``, ``build_app``...), so the engines' other tasks and the
sync agent's image never need them.
"""

from __future__ import annotations

from typing import Any

from filesim.manifests.props import Target

__all__ = ["OUT_MARKER", "Manifest", "SynthError", "Target", "build_app", "cdk8s", "k8s",
           "manifests", "synth", "to_yaml"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from filesim.manifests import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
