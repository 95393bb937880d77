"""What the controller needs to run a cluster: its CA (to admit hosts), where agents reach it, how it
dials a host, and how long a host may stay silent. ``None`` on the Controller under ``atoll up``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from atoll.model.ports import HostAgent
from atoll.scheduler import Overcommit


@dataclass(frozen=True)
class ClusterConfig:
    ca_key_pem: bytes = field(repr=False)
    ca_cert_pem: bytes
    address: str
    """``host:port`` of the cluster listener, as join tokens carry it."""
    connect: Callable[[str, str], HostAgent]
    """(host id, address) -> a HostAgent that calls that host over mTLS."""
    heartbeat_timeout: float = 15.0
    """Three missed heartbeats at the default 5 s interval: long enough to ride out a GC pause or a
    busy controller, short enough that a dead host stops receiving placements quickly."""
    token_ttl: float = 3600.0
    on_host_connected: Callable[[HostAgent], None] | None = None
    """Called when a host's agent is (re)connected, e.g. to make sure it holds the starter image."""
    overcommit: Overcommit = field(default_factory=Overcommit)
    on_host_returned: Callable[[str], None] | None = None
    """Called with a host id when a ``down`` host heartbeats again (it is then ``fencing``); it must
    mark the host ``ready`` once the host dropped its stale copies (``services/failover.fence``).
    None: the host is ``ready`` at once."""
    controller_expiry: float = 10.0
    """Seconds a controller may go without renewing its presence before agents stop being told about it
    (``services/controllers``: ``EXPIRY_INTERVALS`` lease intervals under ``atoll serve``)."""
