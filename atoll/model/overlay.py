"""Overlay networks as the controller hands them to a host, and the host's own networks as it reports them.

An overlay network spans hosts with VXLAN: on each host that has a port of it, the network's bridge gets
a VXLAN device with the network's VNI. Nothing is learned from the wire (``nolearning``, no multicast):
the controller tells each host where every remote port lives (its MAC and IP, and the underlay address
of its host), and which peer hosts get a copy of broadcast, unknown-unicast and multicast frames.

The other direction: each agent reports its underlay address and MTU and the networks the host itself
is on (addresses and routes of interfaces that Atoll did not make), so the controller can refuse tenant
CIDRs that would shadow them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VXLAN_OVERHEAD = 50
"""Outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8) bytes: an instance's MTU is the underlay's minus
this."""
DEFAULT_VXLAN_PORT = 4789
"""The IANA port for VXLAN."""
DEFAULT_UNDERLAY_MTU = 1500


@dataclass(frozen=True)
class RemotePort:
    """A port of an overlay network on another host."""

    port_id: str
    mac: str
    ip: str
    host_id: str
    underlay: str
    """The underlay address of the port's host: where frames for ``mac`` are tunnelled."""


@dataclass(frozen=True)
class OverlayNetwork:
    """One overlay network that has a port on the host asking."""

    network_id: str
    vni: int
    mtu: int
    peers: list[str] = field(default_factory=list)
    """Underlay addresses of the other hosts with ports on the network (flooding targets), sorted."""
    remote_ports: list[RemotePort] = field(default_factory=list)


@dataclass(frozen=True)
class HostCidr:
    """A network the host itself is on: the prefix of an address, or the destination of a route."""

    interface: str
    cidr: str


@dataclass(frozen=True)
class HostNetworkReport:
    underlay_ip: str
    """The address VXLAN packets of this host come from and go to; "" when the host has none."""
    underlay_mtu: int = DEFAULT_UNDERLAY_MTU
    cidrs: list[HostCidr] = field(default_factory=list)
