"""Wire schemas of the cluster endpoints: hosts with capacity and allocation, join tokens, joins.
Kept apart from ``atoll.schemas`` so the cluster work does not crowd the shared file."""

from __future__ import annotations

from pydantic import Field

from atoll.schemas import Wire


class Resources(Wire):
    cpu_millis: int = 0
    memory_bytes: int = 0
    disk_bytes: int = 0
    pids: int = 0


class HostDetail(Wire):
    id: str
    name: str
    state: str
    """``ready``, ``draining`` (drained by an operator), ``down`` (heartbeats stopped), ``fencing`` (back
    from ``down``, dropping the copies moved elsewhere before it is ``ready``), ``offline``."""
    drained: bool
    address: str
    runtime: str
    cgroup_version: int
    capacity: Resources | None
    """None for the local host of ``atoll up``, which does not report capacity."""
    allocated: Resources
    """The sum of what the instances placed here requested."""
    used: Resources | None
    instances: int
    heartbeat_age: float | None
    """Seconds since the last heartbeat; None for a host that never sent one."""
    last_seen: str


class TokenCreate(Wire):
    ttl: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)
    """Seconds the token stays valid."""


class Token(Wire):
    token: str
    expires_at: float


class JoinRequest(Wire):
    """What a new host sends to the cluster listener (not the native API)."""

    secret: str = Field(min_length=1, max_length=256)
    csr: str = Field(min_length=1, max_length=16384)
    name: str = Field(min_length=1, max_length=255)
    address: str = Field(min_length=3, max_length=255)


class JoinAnswer(Wire):
    host_id: str
    certificate: str
    ca: str
