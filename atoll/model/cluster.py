"""What a host tells the controller about itself in each heartbeat."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostResources:
    """Amounts of the four resources the scheduler reasons about (see docs/scheduler.md)."""

    cpu_millis: int = 0
    memory_bytes: int = 0
    disk_bytes: int = 0
    pids: int = 0


@dataclass(frozen=True)
class HostReport:
    """Sent every heartbeat interval. ``capacity`` is what the host offers, ``used`` what it measures in
    use right now (not what placement has claimed: the controller sums claims itself)."""

    address: str
    """``host:port`` where this host's agent API listens, as the controller should dial it."""
    name: str
    runtime: str
    cgroup_version: int
    capacity: HostResources
    used: HostResources
    instances_running: int = 0
