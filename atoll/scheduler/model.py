"""Plain frozen data the scheduler reasons about.

The scheduler never reads the store: the controller snapshots hosts and their allocations into these
dataclasses, calls a pure function, and writes the result back inside its own transaction. Keeping the
inputs immutable is what lets `place_many` simulate a whole batch without touching the caller's view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

HostState = Literal["ready", "draining", "down"]
Strategy = Literal["binpack", "spread"]
Op = Literal["==", "!="]

RESOURCES: tuple[str, ...] = ("cpu", "memory", "disk", "pids")
"""Resource names in the order every vector below uses; also the reasons `NoHostFits` reports."""

Vector = tuple[int, int, int, int]


class PlacementError(ValueError):
    """Base of the scheduler's errors; the service layer maps it to a 4xx domain error."""


class InvalidRule(PlacementError):
    """An affinity or constraint expression that cannot be parsed; the message names the entry."""


@dataclass(frozen=True, slots=True)
class Constraint:
    """A rule on host labels: `key op pattern`, where pattern is a shell glob."""

    key: str
    op: Op
    pattern: str

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.pattern}"


@dataclass(frozen=True, slots=True)
class AffinityRule:
    """A rule on the instances already on a host.

    `key == "container"` matches instance names; any other key matches that instance label. `==` is
    affinity (some instance must match), `!=` anti-affinity (none may). Soft rules only move the score.
    """

    key: str
    op: Op
    pattern: str
    hard: bool = True

    def __str__(self) -> str:
        return f"{self.key}{self.op}{'' if self.hard else '~'}{self.pattern}"


@dataclass(frozen=True, slots=True)
class HostCapacity:
    """What a host offers. A resource with capacity 0 only accepts requests of 0 for it."""

    id: str
    cpu_millis: int
    memory_bytes: int
    disk_bytes: int = 0
    pids: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    kinds: frozenset[str] = frozenset({"container"})
    state: HostState = "ready"

    @property
    def vector(self) -> Vector:
        return (self.cpu_millis, self.memory_bytes, self.disk_bytes, self.pids)


@dataclass(frozen=True, slots=True)
class PlacedInstance:
    """Just enough of an instance on a host to evaluate affinity rules against it."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HostUsage:
    """What is already allocated on a host (claims, not measured use: placement reserves requests)."""

    host_id: str
    cpu_millis: int = 0
    memory_bytes: int = 0
    disk_bytes: int = 0
    pids: int = 0
    images: frozenset[str] = frozenset()
    instances: tuple[PlacedInstance, ...] = ()

    @property
    def vector(self) -> Vector:
        return (self.cpu_millis, self.memory_bytes, self.disk_bytes, self.pids)

    def plus(self, request: Request) -> HostUsage:
        """The usage after `request` lands here; used by `place_many` so a batch sees its own claims."""
        return HostUsage(
            host_id=self.host_id,
            cpu_millis=self.cpu_millis + request.cpu_millis,
            memory_bytes=self.memory_bytes + request.memory_bytes,
            disk_bytes=self.disk_bytes + request.disk_bytes,
            pids=self.pids + request.pids,
            images=(self.images | {request.image}) if request.image else self.images,
            instances=(*self.instances, PlacedInstance(request.name, request.labels)),
        )


@dataclass(frozen=True, slots=True)
class Request:
    """One instance to place: its reservation, what it is, and the rules it carries.

    `project` is carried for the caller (per-project strategy defaults, quotas); no filter reads it yet.
    """

    cpu_millis: int
    memory_bytes: int
    disk_bytes: int = 0
    pids: int = 0
    kind: str = "container"
    project: str = "default"
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    constraints: tuple[Constraint, ...] = ()
    affinities: tuple[AffinityRule, ...] = ()
    strategy: Strategy = "binpack"
    image: str = ""

    @property
    def vector(self) -> Vector:
        return (self.cpu_millis, self.memory_bytes, self.disk_bytes, self.pids)


@dataclass(frozen=True, slots=True)
class Overcommit:
    """How far allocations may exceed physical capacity, per resource.

    cpu 4.0: CPU is time-shared and most containers idle; OpenStack Nova's current default is 4.0 too.
    memory 1.0: memory cannot be taken back without the OOM killer, and hosts run without swap.
    disk 1.0: writable layers grow until the disk is full, and a full disk breaks every tenant on the host.
    pids 1.0: the pid limit is a hard kernel limit per host; exceeding it makes fork() fail.
    """

    cpu: float = 4.0
    memory: float = 1.0
    disk: float = 1.0
    pids: float = 1.0

    @property
    def vector(self) -> tuple[float, float, float, float]:
        return (self.cpu, self.memory, self.disk, self.pids)

    def limits(self, host: HostCapacity) -> tuple[float, float, float, float]:
        """The most that may be allocated on `host`, per resource."""
        c, m, d, p = host.vector
        return (c * self.cpu, m * self.memory, d * self.disk, p * self.pids)


@dataclass(frozen=True, slots=True)
class Placement:
    """The chosen host and the best few scores (`place.TOP_SCORES`), to explain the choice in logs and CLI."""

    host_id: str
    scores: Mapping[str, float]


class NoHostFits(PlacementError):
    """No host passed the filters; `rejected` counts hosts per reason, in filter order."""

    def __init__(self, rejected: Mapping[str, int]) -> None:
        self.rejected = dict(rejected)
        if rejected:
            detail = ", ".join(
                f"{reason} rejected {n} host{'s' if n != 1 else ''}" for reason, n in rejected.items()
            )
        else:
            detail = "there are no hosts"
        super().__init__(f"no host fits: {detail}")
