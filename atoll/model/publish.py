"""Port publishing (``-p``) as a host receives it: host ports forwarded to ports of an instance.

The controller picks the host port (also a random one) when the instance is created; the host makes
the path (see ``atoll.agent.net.publish``).
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True)
class PublishedPort:
    protocol: str
    """``tcp`` or ``udp``."""
    host_port: int
    container_port: int
    host_ip: str = ""
    """The host address it listens on; "" for every address of the host (Docker's 0.0.0.0)."""
