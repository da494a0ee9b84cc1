"""Discovery: one ConfigMap telling a system under test where every NAS is."""

from __future__ import annotations

import json
from collections.abc import Sequence

from cdk8s_plus_33 import k8s
from constructs import Construct

from filesim.manifests.props import EXPORT_DIR, NasProps


def endpoints(servers: Sequence[NasProps]) -> dict[str, dict[str, object]]:
    """Host, port, path and claim of every NAS, keyed by NAS name."""
    return {
        p.name: {
            "host": p.nas.service.cluster_ip,
            "dns": f"{p.name}.{p.namespace}.svc.cluster.local",
            "port": p.nas.nfs.port,
            "path": EXPORT_DIR,
            "pvc": p.name,
            "role": p.nas.role,
            "access": p.nas.access,
            "nfsVersion": p.nas.nfs.preferred_version,
        }
        for p in servers
    }


class Discovery(Construct):
    """ConfigMap ``<id>`` with ``nas-servers.json`` and one ``<nas>.url`` key per NAS."""

    def __init__(self, scope: Construct, id: str, *, namespace: str, servers: Sequence[NasProps]):
        super().__init__(scope, id)
        found = endpoints(servers)
        data = {"nas-servers.json": json.dumps(found, indent=2, sort_keys=True) + "\n"}
        for name, e in found.items():
            data[f"{name}.url"] = f"nfs://{e['host']}:{e['port']}{e['path']}"
        self.config_map = k8s.KubeConfigMap(
            self, "config-map",
            metadata=k8s.ObjectMeta(name=self.node.id, namespace=namespace,
                                    labels={"app.kubernetes.io/part-of": "filesim"}),
            data=data,
        )
