"""Rows to wire objects, and the instance spec to and from its JSON column."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from atoll.model.image import ImageConfig
from atoll.model.instance import InstanceKind, InstanceSpec, ProcessSpec, Resources
from atoll.model.network import PortSpec
from atoll.model.publish import PublishedPort
from atoll.model.volume import MountSpec
from atoll.schemas import (
    Host,
    Image,
    ImageConfigWire,
    Instance,
    ProcessWire,
    Project,
    PublishedPortWire,
    ResourcesWire,
    RestartPolicyWire,
)
from atoll.services.mounts import mount_view
from atoll.services.netviews import nic_view
from atoll.store.models import HostRow, ImageRow, InstanceRow, ProjectRow


def spec_json(spec: InstanceSpec, cpus: float | None) -> dict[str, Any]:
    """What the ``spec`` column holds: the spec minus the fields that have columns of their own.
    ``cpus`` is kept as the user gave it, to show it back."""
    return {
        "process": asdict(spec.process),
        "layers": list(spec.layers),
        "hostname": spec.hostname,
        "labels": dict(spec.labels),
        "readonly_rootfs": spec.readonly_rootfs,
        "resources": {**asdict(spec.resources), "cpus": cpus},
        "stop_signal": spec.stop_signal,
        "stop_timeout": spec.stop_timeout,
        "ports": [asdict(p) for p in spec.ports],
        "mounts": [asdict(m) for m in spec.mounts],
        "published": [asdict(p) for p in spec.published],
    }


def instance_spec(row: InstanceRow) -> InstanceSpec:
    s = row.spec
    resources = {k: v for k, v in s["resources"].items() if k != "cpus"}
    return InstanceSpec(
        id=row.id,
        name=row.name,
        project=row.project,
        image_id=row.image_id,
        layers=list(s["layers"]),
        process=ProcessSpec(**s["process"]),
        kind=InstanceKind(row.kind),
        hostname=s["hostname"],
        labels=dict(s["labels"]),
        readonly_rootfs=s["readonly_rootfs"],
        resources=Resources(**resources),
        stop_signal=s["stop_signal"],
        stop_timeout=s["stop_timeout"],
        ports=[PortSpec(**p) for p in s.get("ports", [])],
        mounts=[MountSpec(**m) for m in s.get("mounts", [])],
        published=[PublishedPort(**p) for p in s.get("published", [])],
        auto_remove=row.auto_remove,
    )


def instance_view(row: InstanceRow) -> Instance:
    spec = instance_spec(row)
    r = spec.resources
    return Instance(
        id=row.id,
        name=row.name,
        project=row.project,
        kind=row.kind,
        image=row.image,
        image_id=row.image_id,
        host=row.host_id,
        status=row.status,
        desired_state=row.desired_state,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        exit_code=row.exit_code,
        oom_killed=row.oom_killed,
        error=row.error,
        restart_count=row.restart_count,
        pid=row.pid,
        # Read off the dataclass: asdict's deep copy was a third of a big list's cost.
        process=ProcessWire.model_validate(spec.process, from_attributes=True),
        hostname=spec.hostname,
        labels=spec.labels,
        readonly_rootfs=spec.readonly_rootfs,
        # Stored values were validated on the way in; construct without re-validating the bounds.
        resources=ResourcesWire.model_construct(
            memory=r.memory_bytes,
            memory_swap=r.memory_swap_bytes,
            cpus=row.spec["resources"].get("cpus"),
            cpu_quota=r.cpu_quota_us,
            cpu_period=r.cpu_period_us,
            cpu_shares=r.cpu_shares,
            pids_limit=r.pids_limit,
        ),
        restart_policy=RestartPolicyWire.model_validate(
            {"name": row.restart_policy, "max_retries": row.restart_max_retries}
        ),
        stop_signal=spec.stop_signal,
        stop_timeout=spec.stop_timeout,
        auto_remove=row.auto_remove,
        networks=[nic_view(p) for p in spec.ports],
        mounts=[mount_view(m) for m in spec.mounts],
        published=[published_view(p) for p in spec.published],
        paused=bool(row.paused) and row.status == "running",
        move_note=row.move_note or "",
    )


def published_view(port: PublishedPort) -> PublishedPortWire:
    return PublishedPortWire(
        container_port=port.container_port,
        protocol=port.protocol,
        host_ip=port.host_ip or "0.0.0.0",
        host_port=port.host_port,
    )


def image_config(row: ImageRow) -> ImageConfig:
    return ImageConfig.from_oci(row.config)


def config_wire(config: ImageConfig) -> ImageConfigWire:
    return ImageConfigWire(**asdict(config))


def config_from_wire(config: ImageConfigWire) -> ImageConfig:
    return ImageConfig(**config.model_dump())


def image_view(row: ImageRow, repo_tags: list[str], repo_digests: list[str]) -> Image:
    return Image(
        id=row.id,
        repo_tags=repo_tags,
        repo_digests=repo_digests,
        size=row.size,
        created=row.created,
        architecture=row.architecture,
        os=row.os,
        layers=list(row.layers),
        config=config_wire(image_config(row)),
        public=row.public,
        project=row.project,
    )


def project_view(row: ProjectRow) -> Project:
    return Project(name=row.name, created_at=row.created_at)


def host_view(row: HostRow) -> Host:
    return Host(
        id=row.id,
        name=row.name,
        state=row.state,
        runtime=row.runtime,
        cgroup_version=row.cgroup_version,
        last_seen=row.last_seen,
    )
