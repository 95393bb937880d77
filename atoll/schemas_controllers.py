"""Wire schema of the controllers sharing one database (``atoll controller ls``)."""

from __future__ import annotations

from typing import Literal

from atoll.schemas import Wire


class ControllerInfo(Wire):
    address: str
    """The cluster address agents dial (``host:port``)."""
    api_url: str
    started_at: str
    seen_age: float
    """Seconds since the controller last renewed its presence."""
    state: Literal["alive", "expired"]
    """``expired``: not renewed for ``EXPIRY_INTERVALS`` lease intervals; no longer listed to agents,
    and deleted by the lease holder shortly."""
