"""Wire schemas of the native REST API (``/v1``). Shared by the API layer and the Python SDK.

These are the only shapes that cross HTTP. They are kept apart from the SQL models and from the
controller/agent data in ``atoll.model`` so that each can change without dragging the others.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# Volume shapes live in their own module; re-exported here.
from atoll.schemas_volumes import InstanceMount as InstanceMount
from atoll.schemas_volumes import MountRequest as MountRequest
from atoll.schemas_volumes import Volume as Volume
from atoll.schemas_volumes import VolumeCreate as VolumeCreate
from atoll.schemas_volumes import VolumesPruned as VolumesPruned


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(Wire):
    code: str
    message: str


class ErrorResponse(Wire):
    error: ErrorBody


class Project(Wire):
    name: str
    created_at: str


class ProjectCreate(Wire):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class Host(Wire):
    id: str
    name: str
    state: str
    runtime: str
    cgroup_version: int
    last_seen: str


class ImageConfigWire(Wire):
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = []
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = {}
    stop_signal: str = ""
    exposed_ports: list[str] = []
    volumes: list[str] = []


class Image(Wire):
    id: str
    repo_tags: list[str]
    repo_digests: list[str] = []
    """``repo@sha256:...``: the manifest digests registries serve this image under (from pulls and pushes)."""
    size: int
    created: str
    architecture: str
    os: str
    layers: list[str]
    config: ImageConfigWire
    public: bool = False
    project: str = ""
    """The owning project; public images show up in every project's list."""


class ImageTag(Wire):
    tag: str


class ImageRemoved(Wire):
    untagged: list[str] = []
    deleted: list[str] = []


class ImagePull(Wire):
    reference: str = Field(min_length=1, description="NAME[:TAG] or NAME@sha256:..., as for docker pull")


class ImagePush(Wire):
    reference: str = Field(min_length=1, description="A local image's NAME[:TAG]; its registry is the target")


class TransferProgress(Wire):
    """One line of a pull's or push's NDJSON stream. Per layer: ``id`` (12 hex digits), ``status``,
    ``current`` and ``total`` bytes. The last line carries ``image`` (a pull) or ``digest`` (a push),
    or ``error`` if the transfer failed (nothing of a failed pull is kept)."""

    status: str
    id: str = ""
    current: int | None = None
    total: int | None = None
    image: Image | None = None
    digest: str | None = None
    error: ErrorBody | None = None


class RegistryLogin(Wire):
    registry: str = Field(min_length=1, description="host[:port]; docker.io for Docker Hub")
    username: str = Field(min_length=1)
    password: str = Field(min_length=1, description="Stored; never shown back")


class RegistryLoginView(Wire):
    """What the API tells about a stored login: never the secret."""

    registry: str
    username: str
    created_at: str


class ImagesPruned(Wire):
    deleted: list[str] = []
    untagged: list[str] = []
    reclaimed: int = 0
    """Bytes of the deleted images (unpacked), as ``docker image prune`` reports them."""


class ResourcesWire(Wire):
    memory: int | None = Field(default=None, ge=6 * 1024 * 1024, description="bytes")
    memory_swap: int | None = Field(default=None, ge=-1, description="memory + swap in bytes; -1 unlimited")
    cpus: float | None = Field(default=None, gt=0, description="shorthand for a CFS quota over 100 ms")
    cpu_quota: int | None = Field(default=None, ge=1000)
    cpu_period: int | None = Field(default=None, ge=1000, le=1_000_000)
    cpu_shares: int | None = Field(default=None, ge=2, le=262144)
    pids_limit: int | None = Field(default=None, ge=1)


class RestartPolicyWire(Wire):
    name: Literal["no", "on-failure", "always", "unless-stopped"] = "no"
    max_retries: int = Field(default=0, ge=0)


class AllocationPool(Wire):
    start: str
    end: str


class SubnetSpec(Wire):
    """A subnet as given inline with a new network."""

    cidr: str = Field(
        description="IPv4 CIDR, e.g. 10.0.0.0/24, or 'auto': a free block of the default address pools"
    )
    name: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
    gateway: str | None = Field(default=None, description="default: the first host address")
    no_gateway: bool = False
    allocation_pools: list[AllocationPool] | None = Field(
        default=None, description="default: every host address but the gateway"
    )
    dns_nameservers: list[str] = []


class SubnetCreate(SubnetSpec):
    network: str = Field(min_length=1, description="network name or id")


class Subnet(Wire):
    id: str
    name: str
    project: str
    network: str
    cidr: str
    ip_version: int
    gateway: str | None
    allocation_pools: list[AllocationPool]
    dns_nameservers: list[str]
    created_at: str


class NetworkCreate(Wire):
    name: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
    type: str = Field(default="overlay", description="overlay (VXLAN, spans hosts) or bridge (host-local)")
    mtu: int | None = Field(
        default=None,
        ge=576,
        le=9000,
        description="default: 1500 for bridge, the underlay's minus 50 for overlay",
    )
    labels: dict[str, str] = {}
    subnets: list[SubnetSpec] = []
    uplink: str | None = Field(
        default=None, description="external networks: the host interface that their bridge enslaves"
    )


class Network(Wire):
    id: str
    name: str
    project: str
    type: str
    mtu: int
    labels: dict[str, str]
    subnets: list[Subnet]
    created_at: str
    uplink: str = ""


class FixedIp(Wire):
    subnet: str
    ip: str


class Port(Wire):
    """A NIC on a network: today always an instance's, made and removed with it."""

    id: str
    project: str
    network: str
    instance: str | None
    device: str
    mac: str
    fixed_ips: list[FixedIp]
    aliases: list[str]
    created_at: str
    security_groups: list[str] = []
    """Ids of the port's security groups."""


class SecurityGroupRuleCreate(Wire):
    """An allow rule, with Neutron's fields. ``port_range`` needs tcp or udp; at most one remote."""

    direction: str = Field(description="ingress or egress")
    ethertype: str = "IPv4"
    protocol: str = Field(default="any", description="tcp, udp, icmp or any")
    port_range_min: int | None = None
    port_range_max: int | None = Field(default=None, description="default: port_range_min")
    remote_ip_prefix: str | None = Field(default=None, description="a CIDR; default 0.0.0.0/0")
    remote_group: str | None = Field(default=None, description="group name or id; its members")


class SecurityGroupRule(Wire):
    id: str
    group: str
    direction: str
    ethertype: str
    protocol: str
    port_range_min: int | None
    port_range_max: int | None
    remote_ip_prefix: str | None
    remote_group: str | None
    created_at: str


class SecurityGroupCreate(Wire):
    name: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
    description: str = Field(default="", max_length=255)


class SecurityGroup(Wire):
    id: str
    name: str
    project: str
    description: str
    rules: list[SecurityGroupRule]
    created_at: str


class SecurityGroupsUpdate(Wire):
    """The whole new set of groups (names or ids); empty: no traffic but replies passes."""

    security_groups: list[str]


class PublishRequest(Wire):
    """One host port forwarded to a port of the instance (one item of Docker's ``-p``)."""

    container_port: int = Field(ge=1, le=65535)
    host_port: int | None = Field(default=None, description="default: a free port chosen by Atoll")
    host_ip: str | None = Field(default=None, description="default: every address of the host")
    protocol: str = "tcp"


class PublishedPortWire(Wire):
    container_port: int
    protocol: str
    host_ip: str
    host_port: int


class InstanceNetwork(Wire):
    """One NIC of a new instance."""

    network: str = Field(min_length=1, description="network name or id")
    ip: str | None = Field(default=None, description="a fixed address; default: the next free one")
    aliases: list[Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9.-]{0,62}$")]] = []
    mac: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$",
        description="a chosen unicast MAC, unique on the network; default: a random one",
    )


class InstanceNic(Wire):
    network: str
    port: str
    device: str
    mac: str
    ip: str
    prefix_len: int
    gateway: str
    aliases: list[str] = []
    ip_requested: bool = False


class InstanceCreate(Wire):
    image: str = Field(min_length=1)
    name: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
    kind: Literal["container"] = "container"
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = []
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9.-]{0,62}$")
    labels: dict[str, str] = {}
    readonly_rootfs: bool = False
    tty: bool = False
    stdin: bool = False
    """Keep the main process's stdin open for writers (``docker run -i``); see docs/runtime.md."""
    console_size: list[Annotated[int, Field(ge=1, le=65535)]] | None = Field(
        default=None, min_length=2, max_length=2, description="[rows, cols] of the tty at start"
    )
    resources: ResourcesWire = ResourcesWire()
    restart_policy: RestartPolicyWire = RestartPolicyWire()
    stop_signal: str | None = None
    stop_timeout: float | None = Field(default=None, ge=0)
    auto_remove: bool = False
    networks: list[InstanceNetwork] = []
    """NICs on tenant networks; without any, the instance has loopback only."""
    mounts: list[MountRequest] = []
    """Volumes, bind mounts and tmpfs; the image's VOLUMEs not covered get anonymous volumes."""

    security_groups: list[str] | None = None
    """Groups (names or ids) of every NIC; default: the project's ``default`` group."""
    publish: list[PublishRequest] = []
    """Host ports forwarded to the instance (``-p``)."""
    publish_all: bool = False
    """Also publish every port the image exposes, each on a random host port (``-P``)."""


class ProcessWire(Wire):
    args: list[str]
    env: list[str]
    cwd: str
    user: str
    tty: bool
    stdin: bool = False
    console_size: list[int] | None = None


class Instance(Wire):
    id: str
    name: str
    project: str
    kind: str
    image: str
    image_id: str
    host: str
    status: str
    desired_state: str
    created_at: str
    started_at: str
    finished_at: str
    exit_code: int | None
    oom_killed: bool
    error: str
    restart_count: int
    pid: int
    process: ProcessWire
    hostname: str
    labels: dict[str, str]
    readonly_rootfs: bool
    resources: ResourcesWire
    restart_policy: RestartPolicyWire
    stop_signal: str
    stop_timeout: float
    auto_remove: bool
    networks: list[InstanceNic] = []
    mounts: list[InstanceMount] = []
    published: list[PublishedPortWire] = []
    paused: bool = False
    """Frozen by pause (only while running)."""
    move_note: str = ""
    """What the last move to another host (evacuation, failover) left behind, e.g. a volume whose data
    stayed on the old host, or why a failover left the instance on its down host. Empty: never moved."""


class WaitResult(Wire):
    exit_code: int
    oom_killed: bool = False
    error: str = ""


class ExecStart(Wire):
    """First message on the exec WebSocket."""

    args: list[str] = Field(min_length=1)
    env: list[str] = []
    cwd: str = ""
    user: str = ""
    tty: bool = False
    stdin: bool = False


# Log and exec streams reuse Docker's framing so the Docker API layer can pass them through unchanged:
# an 8-byte header (stream id, three zero bytes, big-endian payload length) and the payload.
STREAM_STDIN = 0
STREAM_STDOUT = 1
STREAM_STDERR = 2
LOG_MEDIA_TYPE = "application/vnd.atoll.multiplexed-stream"


class InstanceRename(Wire):
    """A new name for an instance; its names on networks follow (aliases stay as they are)."""

    name: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
