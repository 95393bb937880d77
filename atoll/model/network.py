"""Tenant networking as the controller hands it to a host: one ``PortSpec`` per NIC of an instance.

A port carries everything the host needs to wire it, already decided by the controller: the address
(from IPAM), the MAC, the gateway and the resolvers. It names its network by id only; how a host
realises the network (a bridge and its name, later a VXLAN device) is the host's business, because
names carry a prefix that each host configures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class NetworkType(StrEnum):
    """``overlay`` (the default) and ``bridge`` exist; the others are refused as not supported yet."""

    BRIDGE = "bridge"
    """Host-local: a Linux bridge on each host that has a port on the network."""
    OVERLAY = "overlay"
    """A bridge on each host with a port, joined across hosts by VXLAN (see ``atoll.model.overlay``)."""
    EXTERNAL = "external"
    """Bridged to a host interface, for routers' gateways and floating IPs (later)."""
    FLAT = "flat"


DEFAULT_MTU = 1500


@dataclass(frozen=True)
class PortSpec:
    """One NIC of an instance. ``ip``/``prefix_len`` form its address; ``gateway`` is "" without one."""

    id: str
    network_id: str
    mac: str
    ip: str
    prefix_len: int
    device: str = "eth0"
    """The interface name inside the instance."""
    gateway: str = ""
    mtu: int = DEFAULT_MTU
    dns: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    """Extra names of the instance on this network (for the resolver, later)."""
    ip_requested: bool = False
    """The address was asked for (a fixed IP), not picked: Docker shows it as ``IPAMConfig``."""

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefix_len}"
