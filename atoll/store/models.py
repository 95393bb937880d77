"""SQL models of the controller's state.

Times are RFC 3339 text in UTC: it sorts, it is what the wire carries, and it keeps the nanoseconds that the
agent reports. Every tenant-visible row carries its project. Images are keyed by (project, id): two
projects that import the same image each own a catalog entry, while ``image_hosts`` records where the
content itself lives, independent of who owns it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DEFAULT_PROJECT = "default"


class Base(DeclarativeBase):
    pass


class ProjectRow(Base):
    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    created_at: Mapped[str] = mapped_column(String(40))


class HostRow(Base):
    __tablename__ = "hosts"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(32))
    """``ready`` while an agent is registered, ``offline`` after it went away."""
    runtime: Mapped[str] = mapped_column(String(32))
    cgroup_version: Mapped[int] = mapped_column(Integer)
    last_seen: Mapped[str] = mapped_column(String(40))


class ImageRow(Base):
    __tablename__ = "images"

    project: Mapped[str] = mapped_column(
        String(63), ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(71), primary_key=True)
    """The config digest, ``sha256:<hex>``, as Docker shows it."""
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    """Visible to every project (the starter image), owned and removable only by ``project``."""
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    created: Mapped[str] = mapped_column(String(40))
    """When the image was built, from its config; ``created_at`` is when the catalog learned of it."""
    architecture: Mapped[str] = mapped_column(String(32))
    os: Mapped[str] = mapped_column(String(32))
    layers: Mapped[list[str]] = mapped_column(JSON)
    """Uncompressed layer digests (diff_ids), bottom first."""
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The runtime config in OCI form (``Entrypoint``, ``Cmd``, ``Env`` ...)."""
    created_at: Mapped[str] = mapped_column(String(40))
    last_used: Mapped[str | None] = mapped_column(String(40), nullable=True, default=None)
    """When an instance was last made from it: the image GC removes the least recently used first."""

    __table_args__ = (Index("ix_images_id", "id"),)


class ImageTagRow(Base):
    __tablename__ = "image_tags"

    project: Mapped[str] = mapped_column(String(63), primary_key=True)
    repo: Mapped[str] = mapped_column(String(255), primary_key=True)
    """Normalized Docker-style: ``busybox``, ``ghcr.io/org/app``; never ``docker.io/library/``."""
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)
    image_id: Mapped[str] = mapped_column(String(71))

    __table_args__ = (
        ForeignKeyConstraint(["project", "image_id"], ["images.project", "images.id"], ondelete="CASCADE"),
        Index("ix_image_tags_image", "project", "image_id"),
    )


class ImageHostRow(Base):
    """Which hosts hold an image's content. Keyed by image id alone: content is shared by projects."""

    __tablename__ = "image_hosts"

    image_id: Mapped[str] = mapped_column(String(71), primary_key=True)
    host_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )


class InstanceRow(Base):
    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(63), ForeignKey("projects.name", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    image: Mapped[str] = mapped_column(String(512))
    """The image reference as the user gave it."""
    image_id: Mapped[str] = mapped_column(String(71))
    host_id: Mapped[str] = mapped_column(String(128), ForeignKey("hosts.id", ondelete="RESTRICT"))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The merged ``InstanceSpec`` fields other than the columns above (process, resources, labels ...)."""
    desired_state: Mapped[str] = mapped_column(String(16))
    """``running`` or ``stopped``: what the agent converges to."""
    status: Mapped[str] = mapped_column(String(16))
    """``atoll.model.instance.InstanceStatus``: what was last observed."""
    pid: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[str] = mapped_column(String(40), default="")
    finished_at: Mapped[str] = mapped_column(String(40), default="")
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Of the last finished run; NULL while it never finished or while a run is under way."""
    oom_killed: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str] = mapped_column(String, default="")
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    restart_streak: Mapped[int] = mapped_column(Integer, default=0)
    """Consecutive quick restarts: the exponent of the back-off; reset by a run of 10 s or more."""
    restart_policy: Mapped[str] = mapped_column(String(16))
    restart_max_retries: Mapped[int] = mapped_column(Integer, default=0)
    auto_remove: Mapped[bool] = mapped_column(Boolean, default=False)
    user_stopped: Mapped[bool] = mapped_column(Boolean, default=False)
    """Set by stop and kill: the restart policy must not bring the instance back."""
    restart_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Unix time at which a RESTARTING instance's back-off ends."""
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    """Frozen by ``pause`` (only meaningful while RUNNING)."""
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Placement generation: +1 at each move to another host (services/evacuate.py, failover.py)."""

    claim_cpu_millis: Mapped[int] = mapped_column(BigInteger, default=0)
    claim_memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    claim_pids: Mapped[int] = mapped_column(BigInteger, default=0)
    """What the instance reserves on its host, derived from ``spec`` (see ``store/claims.py``)."""
    move_note: Mapped[str] = mapped_column(String, default="", server_default="")
    """What the last move to another host left behind, or why a failover did not move it
    (``services/moves.py``; migration ``0023_move_note``)."""

    __table_args__ = (
        UniqueConstraint("project", "name", name="uq_instances_project_name"),
        Index("ix_instances_host", "host_id"),
        Index("ix_instances_image", "image_id"),
    )


class RegistryCredentialRow(Base):
    """A project's login to one registry. Written by ``atoll login``, read only to hand to an agent for a
    pull or push; never returned by the API, never logged."""

    __tablename__ = "registry_credentials"

    project: Mapped[str] = mapped_column(
        String(63), ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True
    )
    host: Mapped[str] = mapped_column("registry", String(255), primary_key=True)
    """``host[:port]`` as in image references; Docker Hub is ``docker.io``."""
    username: Mapped[str] = mapped_column(String(255))
    secret: Mapped[str] = mapped_column(String)
    """The password or identity token, as given. The database file is readable by its owner only."""
    created_at: Mapped[str] = mapped_column(String(40))


class NetworkRow(Base):
    """A tenant network. Hosts realise it on demand (a bridge where it has ports); it holds no host state."""

    __tablename__ = "networks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(63), ForeignKey("projects.name", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(16))
    """``atoll.model.network.NetworkType``."""
    mtu: Mapped[int] = mapped_column(Integer)
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[str] = mapped_column(String(40))
    uplink: Mapped[str] = mapped_column(String(15), default="", server_default="")
    """For an ``external`` network: the host interface its bridge enslaves; else empty."""

    __table_args__ = (UniqueConstraint("project", "name", name="uq_networks_project_name"),)


class SubnetRow(Base):
    __tablename__ = "subnets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(63), ForeignKey("projects.name", ondelete="RESTRICT"))
    network_id: Mapped[str] = mapped_column(String(64), ForeignKey("networks.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    cidr: Mapped[str] = mapped_column(String(64))
    """Normalized, e.g. ``10.0.0.0/24``. Overlaps are refused within a network, allowed across networks."""
    ip_version: Mapped[int] = mapped_column(Integer)
    gateway: Mapped[str] = mapped_column(String(64))
    """Empty when the subnet has no gateway."""
    allocation_pools: Mapped[list[list[str]]] = mapped_column(JSON)
    """``[[start, end], ...]``, inclusive, sorted, never containing the gateway."""
    dns_nameservers: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[str] = mapped_column(String(40))

    __table_args__ = (Index("ix_subnets_network", "network_id"),)


class PortRow(Base):
    """A NIC on a network. It lives and dies with its instance (``ondelete=CASCADE``), freeing its
    addresses with it; a network cannot be deleted while it has ports."""

    __tablename__ = "ports"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(63), ForeignKey("projects.name", ondelete="RESTRICT"))
    network_id: Mapped[str] = mapped_column(String(64), ForeignKey("networks.id", ondelete="RESTRICT"))
    instance_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("instances.id", ondelete="CASCADE"), nullable=True
    )
    device: Mapped[str] = mapped_column(String(15))
    """The interface name inside the instance (``eth0``, ``eth1`` ...)."""
    mac: Mapped[str] = mapped_column(String(17))
    aliases: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[str] = mapped_column(String(40))

    __table_args__ = (
        UniqueConstraint("network_id", "mac", name="uq_ports_network_mac"),
        Index("ix_ports_instance", "instance_id"),
    )


class IpAllocationRow(Base):
    """An address in use. The primary key (subnet, address) is what makes a double allocation impossible,
    whatever two controllers or transactions decide at the same moment."""

    __tablename__ = "ip_allocations"

    subnet_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("subnets.id", ondelete="RESTRICT"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    port_id: Mapped[str] = mapped_column(String(64), ForeignKey("ports.id", ondelete="CASCADE"))

    __table_args__ = (Index("ix_ip_allocations_port", "port_id"),)


class ImageDigestRow(Base):
    """``repo@sha256:...`` names of an image: the manifest digest a registry knows it by (``RepoDigests``).

    Recorded when an image is pulled from or pushed to ``repo``; a reference by digest resolves here."""

    __tablename__ = "image_digests"

    project: Mapped[str] = mapped_column(String(63), primary_key=True)
    repo: Mapped[str] = mapped_column(String(255), primary_key=True)
    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    """The manifest (or index) digest, ``sha256:<hex>``: what ``docker pull repo@digest`` names."""
    image_id: Mapped[str] = mapped_column(String(71))

    __table_args__ = (
        ForeignKeyConstraint(["project", "image_id"], ["images.project", "images.id"], ondelete="CASCADE"),
        Index("ix_image_digests_image", "project", "image_id"),
    )


# Tables of features kept in modules of their own; imported here so ``Base.metadata`` holds every table.
# Tables of other topics, in modules of their own; imported here so Base.metadata holds them all.
import atoll.store.secgroups  # noqa: E402, F401
from atoll.store import claims as _claims  # noqa: E402, F401  (claim columns kept in step with spec)
from atoll.store import controllers as _controllers  # noqa: E402, F401  (controllers, cluster CA)
from atoll.store import overlaynet as _overlaynet  # noqa: E402, F401
from atoll.store import routing as _routing  # noqa: E402, F401  (routers' tables, on the same Base)
