"""Wire schemas of instance moves between hosts: ``atoll host evacuate`` and the failover record."""

from __future__ import annotations

from atoll.schemas import Wire


class EvacuateRequest(Wire):
    force: bool = False
    """Also move instances with volumes or bind mounts (their data stays behind: they start empty)."""


class MovedInstance(Wire):
    id: str
    name: str
    target: str
    """The host it runs on now."""
    generation: int
    was_running: bool
    downtime_ms: float | None
    """Stopped on the source -> running on the target (None: it was not running)."""
    precopy_bytes: int
    """Writable layer copied while it still ran."""
    delta_bytes: int
    """Copied after it stopped: what changed since the pre-copy began, plus the manifest."""
    phases_ms: dict[str, float] = {}
    """Where the downtime went: stop, delta, create and install, start on target."""
    left_behind: list[str] = []
    """Volumes and bind mounts whose data stayed on the old host (only with force)."""


class UnmovedInstance(Wire):
    id: str
    name: str
    reason: str


class Evacuation(Wire):
    host: str
    moved: list[MovedInstance] = []
    unmoved: list[UnmovedInstance] = []
