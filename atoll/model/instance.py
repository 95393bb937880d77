"""Instances: what the controller asks a host to run, and what the host reports back."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from atoll.model.network import PortSpec
from atoll.model.publish import PublishedPort
from atoll.model.volume import MountSpec


class InstanceKind(StrEnum):
    """Every workload has a kind; one lifecycle drives them all. Only containers exist today."""

    CONTAINER = "container"
    VM = "vm"
    MICROVM = "microvm"


class InstanceStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    RESTARTING = "restarting"
    EXITED = "exited"
    DEAD = "dead"


@dataclass(frozen=True)
class Resources:
    """Limits enforced through cgroups. ``None`` means unlimited.

    ``memory_swap_bytes`` follows Docker: the total of memory and swap, or -1 for unlimited swap.
    """

    memory_bytes: int | None = None
    memory_swap_bytes: int | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None


@dataclass(frozen=True)
class RestartPolicy:
    name: str = "no"  # no | on-failure | always | unless-stopped
    max_retries: int = 0  # on-failure only; 0 means no limit


@dataclass(frozen=True)
class ProcessSpec:
    """The main process after the image config and the request are merged."""

    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    user: str = (
        ""  # unresolved: "", "uid", "uid:gid", "name", "name:group"; the host resolves it in the image
    )
    tty: bool = False
    stdin: bool = False
    """The process reads a stdin that writers attach to (see docs/runtime.md); else /dev/null."""
    console_size: list[int] | None = None
    """[rows, cols] of the tty when the process starts (with ``tty``)."""


@dataclass(frozen=True)
class InstanceSpec:
    """Everything a host needs to run one instance. Plain data; it crosses the controller/agent boundary."""

    id: str
    name: str
    project: str
    image_id: str
    layers: list[str]
    process: ProcessSpec
    kind: InstanceKind = InstanceKind.CONTAINER
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    readonly_rootfs: bool = False
    resources: Resources = field(default_factory=Resources)
    stop_signal: str = "SIGTERM"
    stop_timeout: float = 10.0
    ports: list[PortSpec] = field(default_factory=list)
    """NICs on tenant networks. Without any, the instance has a network namespace with loopback only."""
    mounts: list[MountSpec] = field(default_factory=list)
    """Volumes, bind mounts and tmpfs, in the order requested (then the image's anonymous volumes)."""

    published: list[PublishedPort] = field(default_factory=list)
    """Host ports forwarded to the instance (``-p``); the host reaches it through a veth of its own."""
    auto_remove: bool = False
    """Removed when it exits (``--rm``): its writable layer never outlives the run, so it is volatile."""


@dataclass(frozen=True)
class ExitInfo:
    """How a run ended. ``exit_code`` follows the shell rule: 128 + signal for a signalled process."""

    exit_code: int
    oom_killed: bool = False
    finished_at: str = ""  # RFC 3339, UTC
    error: str = ""


@dataclass(frozen=True)
class RuntimeState:
    """What a host observes about one instance."""

    id: str
    running: bool
    pid: int = 0
    started_at: str = ""
    exit: ExitInfo | None = None


@dataclass(frozen=True)
class LogEntry:
    """One line (or a partial line) of an instance's output."""

    time: str  # RFC 3339 with nanoseconds, UTC
    stream: str  # stdout | stderr
    data: bytes  # includes the trailing newline unless ``partial``
    partial: bool = False
