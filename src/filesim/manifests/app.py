"""The cdk8s app: values → charts of constructs → manifest files, written atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filesim.errors import BadInput, UserError

if shutil.which("node") is None:
    raise UserError("Node.js is not installed, and cdk8s runs on it: install it (Debian/Ubuntu: "
                    "`apt-get install nodejs`; Windows: `winget install OpenJS.NodeJS.LTS`)")
# jsii prints a banner on every run under an end-of-life Node; the variable lists silenced majors.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", ",".join(map(str, range(14, 40))))

import cdk8s
import yaml
from cdk8s_plus_33 import k8s

from filesim.manifests.discovery import Discovery
from filesim.manifests.nas_network import NasEndpoint
from filesim.manifests.nas_server import NasServer
from filesim.manifests.props import NAMESPACE_LABELS, NODE_ROOT, NasProps, Target
from filesim.model import Values

SHARED_CHART = "filesim"
DISCOVERY_NAME = "filesim-nas-discovery"
#: Marks an output folder as filesim's, so synth may replace it.
OUT_MARKER = ".filesim-manifests"



class SynthError(BadInput):
    """The manifests cannot be written (e.g. the output folder is not filesim's)."""


@dataclass(frozen=True)
class Manifest:
    """One synthesized file: its name and its objects."""

    filename: str
    objects: list[dict[str, Any]]


def nas_props(values: Values, target: Target, node_root: str | None = None,
              exports_root: str = NODE_ROOT) -> list[NasProps]:
    """Props of every enabled NAS for ``target``."""
    return [
        NasProps(nas=nas, target=target, namespace=values.namespace, image=values.image,
                 node_root=node_root or values.node_root, windows_root=values.windows_root,
                 name_prefix=values.name_prefix, exports_root=exports_root)
        for nas in values.servers
    ]


def build_app(values: Values, target: Target, node_root: str | None = None,
              exports_root: str = NODE_ROOT) -> cdk8s.App:
    """A cdk8s App: one chart per NAS plus, for Kubernetes, one chart of shared objects."""
    app = cdk8s.App(yaml_output_type=cdk8s.YamlOutputType.FILE_PER_CHART)
    servers = nas_props(values, target, node_root, exports_root)
    if target.traits.cluster_objects:
        shared = cdk8s.Chart(app, SHARED_CHART, disable_resource_name_hashes=True)
        k8s.KubeNamespace(shared, "namespace", metadata=k8s.ObjectMeta(
            name=values.namespace, labels=NAMESPACE_LABELS))
        Discovery(shared, DISCOVERY_NAME, namespace=values.namespace, servers=servers)
    for props in servers:
        chart = cdk8s.Chart(app, props.name, disable_resource_name_hashes=True)
        NasServer(chart, "server", props=props)
        if target.traits.cluster_objects:
            NasEndpoint(chart, "endpoint", props=props)
    return app


def manifests(values: Values, target: Target, node_root: str | None = None,
              exports_root: str = NODE_ROOT) -> list[Manifest]:
    """The manifest files for ``target``, in a stable order."""
    app = build_app(values, target, node_root, exports_root)
    return [Manifest(f"{chart.node.id}.k8s.yaml", cdk8s.Testing.synth(chart)) for chart in app.charts]


def synth(values: Values, target: Target, out: Path, node_root: str | None = None) -> list[Path]:
    """Write the manifests into ``out`` atomically: on any error nothing is written or replaced."""
    out = out.resolve()
    if out.exists() and any(out.iterdir()) and not (out / OUT_MARKER).exists():
        raise SynthError(f"{out} holds files filesim did not write; choose an empty or new --out folder")
    files = manifests(values, target, node_root)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for manifest in files:
            (staging / manifest.filename).write_text(to_yaml(manifest.objects))
        (staging / OUT_MARKER).write_text(f"target: {target}\n")
        previous = out.with_name(f".{out.name}.previous")
        if out.exists():
            out.rename(previous)
        try:
            staging.rename(out)
        except OSError:
            if previous.exists():
                previous.rename(out)
            raise
        shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / m.filename for m in files]


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (ganesha.conf) as literal blocks."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """Multi-document YAML with keys in cdk8s's order."""
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
