"""NasEndpoint: the Service of one NAS and the PersistentVolume/Claim pair that mounts it."""

from __future__ import annotations

from cdk8s_plus_33 import k8s
from constructs import Construct

from filesim.manifests.common import labels, nas_name, quantity, selector
from filesim.manifests.props import EXPORT_DIR, NasProps


def mount_options(props: NasProps) -> list[str]:
    """Mount options the kubelet passes to mount.nfs for the preferred NFS version."""
    nfs = props.nas.nfs
    version = nfs.preferred_version
    options = [f"nfsvers={version}", f"port={nfs.port}", "proto=tcp"]
    if version == "3":
        options += [f"mountport={nfs.mount_port}", "nolock"]
    return options


#: What every claim requests: the volume it binds to carries the export's real size.
CLAIM_REQUEST = quantity("1Mi")


class NasEndpoint(Construct):
    """A Service with a fixed ClusterIP, and a PV naming the server by that IP plus its PVC."""

    def __init__(self, scope: Construct, id: str, *, props: NasProps):
        super().__init__(scope, id)
        name, nas = nas_name(self), props.nas
        service, nfs = nas.service, nas.nfs
        ports = [k8s.ServicePort(name="nfs", port=nfs.port, protocol="TCP",
                                 target_port=k8s.IntOrString.from_string("nfs"),
                                 node_port=service.node_port)]
        if nfs.serves_v3:
            ports.append(k8s.ServicePort(name="mountd", port=nfs.mount_port, protocol="TCP",
                                         target_port=k8s.IntOrString.from_string("mountd")))
        self.service = k8s.KubeService(
            self, "service",
            metadata=k8s.ObjectMeta(name=name, namespace=props.namespace, labels=labels(props)),
            spec=k8s.ServiceSpec(type=service.type, cluster_ip=service.cluster_ip,
                                 selector=selector(props), ports=ports),
        )
        access_modes = ["ReadOnlyMany"] if nas.read_only else ["ReadWriteMany"]
        volume_labels = {**labels(props), "filesim.dev/namespace": props.namespace}
        size = quantity(nas.storage.size_limit)
        self.volume = k8s.KubePersistentVolume(
            self, "volume",
            metadata=k8s.ObjectMeta(name=f"{props.namespace}-{name}", labels=volume_labels),
            spec=k8s.PersistentVolumeSpec(
                capacity={"storage": size},
                access_modes=access_modes,
                persistent_volume_reclaim_policy="Retain",
                storage_class_name="",
                mount_options=mount_options(props),
                nfs=k8s.NfsVolumeSource(server=service.cluster_ip, path=EXPORT_DIR,
                                        read_only=nas.read_only),
            ),
        )
        self.claim = k8s.KubePersistentVolumeClaim(
            self, "claim",
            metadata=k8s.ObjectMeta(name=name, namespace=props.namespace, labels=labels(props)),
            spec=k8s.PersistentVolumeClaimSpec(
                access_modes=access_modes,
                storage_class_name="",
                selector=k8s.LabelSelector(match_labels={
                    "app.kubernetes.io/instance": name,
                    "filesim.dev/namespace": props.namespace,
                }),
                # Constant: a claim of storageClassName "" cannot be resized (admission plugin
                # PersistentVolumeClaimResize), so a bigger export changes only the volume.
                resources=k8s.VolumeResourceRequirements(requests={"storage": CLAIM_REQUEST}),
            ),
        )
