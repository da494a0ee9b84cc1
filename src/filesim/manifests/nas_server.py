"""NasServer: the pod of one NAS (seed, sync agent, NFS server) and its ganesha ConfigMap."""

from __future__ import annotations

import functools
from typing import Any

from cdk8s import Chart
from cdk8s_plus_33 import k8s
from constructs import Construct

from filesim.manifests import ganesha
from filesim.manifests.props import (
    EXPORT_DIR,
    GANESHA_CONF_DIR,
    NFS_CAPABILITIES,
    RPCBIND_CAPABILITIES,
    STATE_DIR,
    SYNC_CAPABILITIES,
    WINDOWS_DIR,
    NasProps,
    Target,
    ganesha_config_name,
    volume_name,
)


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
        "filesim.dev/role": props.nas["role"],
    }


def selector(props: NasProps) -> dict[str, str]:
    """The labels that select one NAS's pod."""
    return dict(list(labels(props).items())[:2])


class NasServer(Construct):
    """A Deployment serving one NAS export over NFS, kept in sync with the Windows folder.

    Containers set ``args``, not ``command``, so the image's tini stays PID 1.
    """

    def __init__(self, scope: Construct, id: str, *, props: NasProps):
        super().__init__(scope, id)
        self.props = props
        self.nas = name = nas_name(self)  # one jsii round trip; reused for every object name
        kubernetes = props.target is Target.KUBERNETES
        metadata = dict(name=name, labels=labels(props),
                        namespace=props.namespace if kubernetes else None)
        bind = "127.0.0.1" if props.target is Target.PODMAN else None
        self.config = k8s.KubeConfigMap(
            self, "ganesha-config",
            metadata=k8s.ObjectMeta(**{**metadata, "name": ganesha_config_name(name)}),
            data={"ganesha.conf": ganesha.render(props.nas, port=props.nfs_port, bind_address=bind)},
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
        props = self.props
        seed = self._sync_container("seed", once=True)
        sync = self._sync_container("sync", once=False)
        if props.target is Target.KUBERNETES:
            init = [seed, sync] if props.nas["sidecar"]["enabled"] else [seed]
            if "3" in props.nas["nfs"]["versions"]:
                init.insert(0, self._rpcbind_container())
            containers = [self._nfs_container()]
            restart_policy, host_network = "Always", None
        else:
            init = [seed]
            sidecar = [sync] if props.nas["sidecar"]["enabled"] else []
            containers = [*sidecar, self._nfs_container()]
            # podman 4.3 applies the pod's policy to init containers; Always blocks the pod.
            restart_policy, host_network = "OnFailure", True
        nas = props.nas
        return k8s.PodSpec(
            init_containers=init,
            containers=containers,
            restart_policy=restart_policy,
            host_network=host_network,
            automount_service_account_token=False,
            enable_service_links=False,
            termination_grace_period_seconds=30,
            security_context=k8s.PodSecurityContext(
                seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault"),
            ),
            volumes=[
                k8s.Volume(name=self._volume("windows"), host_path=k8s.HostPathVolumeSource(
                    path=props.share_path, type="DirectoryOrCreate")),
                k8s.Volume(name=self._volume("export"), empty_dir=k8s.EmptyDirVolumeSource(
                    size_limit=quantity(str(nas["storage"]["sizeLimit"])))),
                k8s.Volume(name=self._volume("state"), empty_dir=k8s.EmptyDirVolumeSource(
                    size_limit=quantity(str(nas["storage"]["stateSizeLimit"])))),
                k8s.Volume(name=self._volume("ganesha-run"), empty_dir=k8s.EmptyDirVolumeSource(
                    size_limit=quantity("16Mi"))),
                k8s.Volume(name=self._volume("ganesha-config"), config_map=k8s.ConfigMapVolumeSource(
                    name=ganesha_config_name(self.nas))),
                *([k8s.Volume(name=self._volume("rpcbind-run"), empty_dir=k8s.EmptyDirVolumeSource(
                    size_limit=quantity("1Mi")))] if any(c.name == "rpcbind" for c in init) else []),
            ],
        )

    def _rpcbind_container(self) -> k8s.Container:
        """NFSv3 needs rpcbind running before ganesha registers with it: a native sidecar."""
        props = self.props
        port = k8s.Probe(tcp_socket=k8s.TcpSocketAction(port=k8s.IntOrString.from_number(111)),
                         period_seconds=2, failure_threshold=15)
        return k8s.Container(
            name="rpcbind",
            image=props.image_ref(),
            image_pull_policy=props.image["pullPolicy"],
            args=["rpcbind", "-f", "-w"],
            restart_policy="Always",
            startup_probe=port,
            resources=_resources({"requests": {"cpu": "5m", "memory": "8Mi"},
                                  "limits": {"memory": "32Mi"}}),
            security_context=_security_context(RPCBIND_CAPABILITIES),
            volume_mounts=[k8s.VolumeMount(name=self._volume("rpcbind-run"), mount_path="/run")],
        )

    def _sync_container(self, name: str, *, once: bool) -> k8s.Container:
        props = self.props
        sidecar = props.nas["sidecar"]
        resources = props.nas["seed" if once else "sidecar"]["resources"]
        # podman turns probes into systemd-timer healthchecks, which need systemd: kubernetes only.
        native_sidecar = not once and props.target is Target.KUBERNETES
        health = None if not native_sidecar else k8s.Probe(
            exec=k8s.ExecAction(command=["filesim-sync", "--state", STATE_DIR, "--health"]),
            period_seconds=5, failure_threshold=6, timeout_seconds=3,
        )
        return k8s.Container(
            name=name,
            image=props.image_ref(sidecar.get("image")),
            image_pull_policy={**props.image, **sidecar.get("image", {})}["pullPolicy"],
            args=props.sync_args(once=once),
            restart_policy="Always" if native_sidecar else None,
            startup_probe=health,
            liveness_probe=health,
            resources=_resources(resources),
            security_context=_security_context(SYNC_CAPABILITIES),
            volume_mounts=[
                k8s.VolumeMount(name=self._volume("windows"), mount_path=WINDOWS_DIR),
                k8s.VolumeMount(name=self._volume("export"), mount_path=EXPORT_DIR),
                k8s.VolumeMount(name=self._volume("state"), mount_path=STATE_DIR),
            ],
        )

    def _nfs_container(self) -> k8s.Container:
        props = self.props
        port = props.nfs_port
        kubernetes = props.target is Target.KUBERNETES
        tcp = None if not kubernetes else k8s.Probe(
            tcp_socket=k8s.TcpSocketAction(port=k8s.IntOrString.from_number(port)),
            period_seconds=5, failure_threshold=3)
        ports = [k8s.ContainerPort(name="nfs", container_port=port, protocol="TCP")]
        if "3" in props.nas["nfs"]["versions"]:
            ports.append(k8s.ContainerPort(name="mountd", container_port=props.nas["nfs"]["mountPort"],
                                           protocol="TCP"))
        return k8s.Container(
            name="nfs",
            image=props.image_ref(),
            image_pull_policy=props.image["pullPolicy"],
            args=["ganesha.nfsd", "-F", "-L", "/dev/stdout", "-f",
                     f"{GANESHA_CONF_DIR}/ganesha.conf", "-p", f"{ganesha.RUN_DIR}/ganesha.pid"],
            ports=ports if kubernetes else None,
            readiness_probe=tcp,
            liveness_probe=tcp,
            resources=_resources(props.nas["nfs"]["resources"]),
            security_context=_security_context(NFS_CAPABILITIES),
            volume_mounts=[
                k8s.VolumeMount(name=self._volume("export"), mount_path=EXPORT_DIR),
                k8s.VolumeMount(name=self._volume("ganesha-run"), mount_path=ganesha.RUN_DIR),
                k8s.VolumeMount(name=self._volume("ganesha-config"), mount_path=GANESHA_CONF_DIR,
                                read_only=True),
            ],
        )


def _security_context(capabilities: tuple[str, ...]) -> k8s.SecurityContext:
    return k8s.SecurityContext(
        privileged=False,
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=k8s.Capabilities(drop=["ALL"], add=list(capabilities)),
    )


@functools.cache
def quantity(value: str) -> k8s.Quantity:
    """A Kubernetes quantity; cached, as each one costs a round trip to the jsii runtime."""
    return k8s.Quantity.from_string(value)


def _resources(spec: dict[str, dict[str, Any]]) -> k8s.ResourceRequirements:
    return k8s.ResourceRequirements(
        requests={k: quantity(str(v)) for k, v in spec.get("requests", {}).items()} or None,
        limits={k: quantity(str(v)) for k, v in spec.get("limits", {}).items()} or None,
    )
