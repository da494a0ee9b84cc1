"""Helpers every NAS construct shares: names, labels, quantities, resources, security."""

from __future__ import annotations

import functools

from cdk8s import Chart
from cdk8s_plus_33 import k8s
from constructs import Construct

from filesim.manifests.props import NasProps
from filesim.model import Resources


def nas_name(construct: Construct) -> str:
    """A NAS's objects are named after the chart that holds them."""
    return Chart.of(construct).node.id


def labels(props: NasProps) -> dict[str, str]:
    """Labels of every object of one NAS; the first two select its pod."""
    return {
        "app.kubernetes.io/instance": props.name,
        "app.kubernetes.io/component": "nas",
        "app.kubernetes.io/name": "filesim-nas",
        "app.kubernetes.io/part-of": "filesim",
        "filesim.dev/role": props.nas.role,
        "filesim.dev/deployment": props.namespace,
    }


def selector(props: NasProps) -> dict[str, str]:
    """The labels that select one NAS's pod."""
    return dict(list(labels(props).items())[:2])


@functools.cache
def quantity(value: str) -> k8s.Quantity:
    """A Kubernetes quantity; cached, as each one costs a round trip to the jsii runtime."""
    return k8s.Quantity.from_string(value)


def resources(spec: Resources) -> k8s.ResourceRequirements:
    """Requests and limits of one container."""
    return k8s.ResourceRequirements(
        requests={k: quantity(v) for k, v in spec.requests.items()} or None,
        limits={k: quantity(v) for k, v in spec.limits.items()} or None,
    )


def security_context(capabilities: tuple[str, ...]) -> k8s.SecurityContext:
    """Unprivileged, no escalation, read-only root, every capability dropped but ``capabilities``."""
    return k8s.SecurityContext(
        privileged=False,
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=k8s.Capabilities(drop=["ALL"], add=list(capabilities)),
    )
