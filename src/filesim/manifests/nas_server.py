"""NasServer: the pod of one NAS (seed, sync agent, NFS server) and its ganesha ConfigMap."""

from __future__ import annotations

from cdk8s_plus_33 import k8s
from constructs import Construct

from filesim.manifests import ganesha
from filesim.manifests.common import labels, nas_name, quantity, resources, security_context, selector
from filesim.manifests.props import (
    EXPORT_DIR,
    GANESHA_CONF_DIR,
    NFS_CAPABILITIES,
    RPCBIND_CAPABILITIES,
    STATE_DIR,
    SYNC_CAPABILITIES,
    WINDOWS_ROOT_DIR,
    NasProps,
    ganesha_config_name,
    volume_name,
)
from filesim.model import Resources

RPCBIND_RESOURCES = Resources({"cpu": "5m", "memory": "8Mi"}, {"memory": "32Mi"})


class NasServer(Construct):
    """A Deployment serving one NAS export over NFS, kept in sync with the Windows folder.

    Containers set ``args``, not ``command``, so the image's tini stays PID 1.
    """

    def __init__(self, scope: Construct, id: str, *, props: NasProps):
        super().__init__(scope, id)
        self.props = props
        self.nas = name = nas_name(self)  # one jsii round trip; reused for every object name
        traits = props.traits
        metadata = dict(name=name, labels=labels(props),
                        namespace=props.namespace if traits.namespaced else None)
        self.config = k8s.KubeConfigMap(
            self, "ganesha-config",
            metadata=k8s.ObjectMeta(**{**metadata, "name": ganesha_config_name(name)}),
            data={"ganesha.conf": ganesha.render(props.nas, port=props.nfs_port, clients=props.clients,
                                                 bind_address=traits.bind_address)},
        )
        self.deployment = k8s.KubeDeployment(
            self, "deployment",
            metadata=k8s.ObjectMeta(**metadata),
            spec=k8s.DeploymentSpec(
                replicas=1,
                # Two pods' agents must never sync the same Windows folder at once.
                strategy=k8s.DeploymentStrategy(type="Recreate"),
                selector=k8s.LabelSelector(match_labels=selector(props)),
                template=k8s.PodTemplateSpec(
                    metadata=k8s.ObjectMeta(labels=labels(props)),
                    spec=self._pod_spec(),
                ),
            ),
        )

    def _volume(self, suffix: str) -> str:
        return volume_name(self.nas, suffix)

    def _pod_spec(self) -> k8s.PodSpec:
        props, nas, traits = self.props, self.props.nas, self.props.traits
        seed = self._sync_container("seed", once=True)
        sidecar = [self._sync_container("sync", once=False)] if nas.sidecar_enabled else []
        rpcbind = [self._rpcbind_container()] if nas.nfs.serves_v3 else []
        if traits.native_sidecars:
            init, containers = [*rpcbind, seed, *sidecar], [self._nfs_container()]
        else:
            init, containers = [seed], [*sidecar, self._nfs_container()]
        return k8s.PodSpec(
            init_containers=init,
            containers=containers,
            restart_policy=traits.pod_restart_policy,
            host_network=traits.host_network,
            automount_service_account_token=False,
            enable_service_links=False,
            termination_grace_period_seconds=30,
            security_context=k8s.PodSecurityContext(
                seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault"),
            ),
            volumes=[
                k8s.Volume(name=self._volume("windows"), host_path=k8s.HostPathVolumeSource(
                    path=props.node_root, type="DirectoryOrCreate")),
                *self._own_filesystems(),
                k8s.Volume(name=self._volume("ganesha-run"), empty_dir=k8s.EmptyDirVolumeSource(
                    size_limit=quantity("16Mi"))),
                k8s.Volume(name=self._volume("ganesha-config"), config_map=k8s.ConfigMapVolumeSource(
                    name=ganesha_config_name(self.nas))),
                *([k8s.Volume(name=self._volume("rpcbind-run"), empty_dir=k8s.EmptyDirVolumeSource(
                    size_limit=quantity("1Mi")))] if rpcbind else []),
            ],
        )

    def _own_filesystems(self) -> list[k8s.Volume]:
        """The export and the agent state, which the engine prepares on the node first.

        The export is a filesystem of its own (no NFS handle leads outside it); both outlive
        the pod together, so the state always describes this export and nothing is lost
        when a pod is replaced. Type Directory: never created on the node's own disk.
        """
        return [k8s.Volume(name=self._volume(kind), host_path=k8s.HostPathVolumeSource(
            path=f"{self.props.node_dir}/{kind}", type="Directory")) for kind in ("export", "state")]

    def _rpcbind_container(self) -> k8s.Container:
        """NFSv3 needs rpcbind running before ganesha registers with it: a native sidecar."""
        props = self.props
        port = k8s.Probe(tcp_socket=k8s.TcpSocketAction(port=k8s.IntOrString.from_number(111)),
                         period_seconds=2, failure_threshold=15)
        return k8s.Container(
            name="rpcbind",
            image=props.reference(props.image),
            image_pull_policy=props.image.pull_policy,
            args=["rpcbind", "-f", "-w"],
            restart_policy="Always",
            startup_probe=port,
            resources=resources(RPCBIND_RESOURCES),
            security_context=security_context(RPCBIND_CAPABILITIES),
            volume_mounts=[k8s.VolumeMount(name=self._volume("rpcbind-run"), mount_path="/run")],
        )

    def _sync_container(self, name: str, *, once: bool) -> k8s.Container:
        props, nas = self.props, self.props.nas
        native_sidecar = not once and props.traits.native_sidecars
        health = None if not (native_sidecar and props.traits.probes) else k8s.Probe(
            exec=k8s.ExecAction(command=["filesim-sync", "--state", STATE_DIR, "--health"]),
            period_seconds=5, failure_threshold=6, timeout_seconds=3,
        )
        return k8s.Container(
            name=name,
            image=props.reference(nas.sidecar_image),
            image_pull_policy=nas.sidecar_image.pull_policy,
            args=props.sync_args(once=once),
            restart_policy="Always" if native_sidecar else None,
            startup_probe=health,
            liveness_probe=health,
            resources=resources(nas.seed_resources if once else nas.sidecar_resources),
            security_context=security_context(SYNC_CAPABILITIES),
            volume_mounts=[
                k8s.VolumeMount(name=self._volume("windows"), mount_path=WINDOWS_ROOT_DIR),
                k8s.VolumeMount(name=self._volume("export"), mount_path=EXPORT_DIR),
                k8s.VolumeMount(name=self._volume("state"), mount_path=STATE_DIR),
            ],
        )

    def _nfs_container(self) -> k8s.Container:
        props, nfs = self.props, self.props.nas.nfs
        port = props.nfs_port
        tcp = None if not props.traits.probes else k8s.Probe(
            tcp_socket=k8s.TcpSocketAction(port=k8s.IntOrString.from_number(port)),
            period_seconds=5, failure_threshold=3)
        # Alive also while a fault stops or freezes the server on purpose (`invoke fault`).
        alive = None if not props.traits.probes else k8s.Probe(
            exec=k8s.ExecAction(command=["filesim-nfs", "--state", STATE_DIR, "alive"]),
            period_seconds=5, failure_threshold=3, timeout_seconds=5)
        ports = [k8s.ContainerPort(name="nfs", container_port=port, protocol="TCP")]
        if nfs.serves_v3:
            ports.append(k8s.ContainerPort(name="mountd", container_port=nfs.mount_port,
                                           protocol="TCP"))
        return k8s.Container(
            name="nfs",
            image=props.reference(props.image),
            image_pull_policy=props.image.pull_policy,
            args=["filesim-nfs", "--state", STATE_DIR, "run", "--", "ganesha.nfsd", "-F", "-L",
                  "/dev/stdout", "-f", f"{GANESHA_CONF_DIR}/ganesha.conf", "-p",
                  f"{ganesha.RUN_DIR}/ganesha.pid"],
            ports=ports if props.traits.cluster_objects else None,
            readiness_probe=tcp,
            liveness_probe=alive,
            resources=resources(nfs.resources),
            security_context=security_context(NFS_CAPABILITIES),
            volume_mounts=[
                k8s.VolumeMount(name=self._volume("export"), mount_path=EXPORT_DIR),
                k8s.VolumeMount(name=self._volume("ganesha-run"), mount_path=ganesha.RUN_DIR),
                k8s.VolumeMount(name=self._volume("ganesha-config"), mount_path=GANESHA_CONF_DIR,
                                read_only=True),
                k8s.VolumeMount(name=self._volume("state"), mount_path=STATE_DIR),  # its faults
            ],
        )

