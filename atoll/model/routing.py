"""Routers as the controller hands them to a host: plain data, already decided by the controller.

A router joins networks. Each of its legs is a port on one network holding one address: on a tenant
subnet that is the subnet's gateway (as in Neutron), on an external network an address from its pool.
A host realises a router as a network namespace with one veth per leg into the network's bridge; the
external network's bridge also enslaves the host interface named by ``uplink``. Floating IPs are 1:1
NAT in the namespace of the router whose gateway is on the floating IP's network.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RouterLeg:
    """One interface of a router: a port on ``network_id`` with the address ``ip/prefix_len``."""

    port_id: str
    network_id: str
    mac: str
    ip: str
    prefix_len: int
    mtu: int = 1500
    uplink: str = ""
    """For a leg on an external network: the host interface its bridge enslaves."""


@dataclass(frozen=True)
class StaticRoute:
    destination: str
    """A CIDR, e.g. ``10.50.0.0/16``."""
    nexthop: str


@dataclass(frozen=True)
class FloatingMapping:
    """Traffic to ``floating_ip`` goes to ``fixed_ip``; traffic of ``fixed_ip`` leaves as ``floating_ip``."""

    floating_ip: str
    fixed_ip: str


@dataclass(frozen=True)
class RouterGateway:
    leg: RouterLeg
    nexthop: str
    """The external subnet's gateway (the default route of the router); "" for none."""
    snat: bool = True
    floating: list[FloatingMapping] = field(default_factory=list)


@dataclass(frozen=True)
class RouterSpec:
    id: str
    interfaces: list[RouterLeg] = field(default_factory=list)
    gateway: RouterGateway | None = None
    routes: list[StaticRoute] = field(default_factory=list)

    @property
    def legs(self) -> list[RouterLeg]:
        return [*self.interfaces, *([self.gateway.leg] if self.gateway else [])]
