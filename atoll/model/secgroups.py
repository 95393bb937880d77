"""Security groups as the controller hands them to a host: what each port on the host may send and
receive, already resolved (group references turned into member addresses) so the host needs no lookups.

A host asks for its ``HostSecurity`` through ``ControlPlane.security``; it is not part of the instance's
spec because the groups of a port, the rules of a group and the members of a group all change while
the instance runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Direction(StrEnum):
    INGRESS = "ingress"
    """Traffic arriving at the port (to the instance)."""
    EGRESS = "egress"
    """Traffic leaving the port (from the instance)."""


class Protocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    ANY = "any"


DEFAULT_GROUP = "default"
"""Every project has one, made on first need: egress allowed, ingress only from its own members."""


@dataclass(frozen=True)
class RuleSpec:
    """One allow rule. A packet is allowed when any rule of any group of its port matches it; stateful:
    replies of an allowed connection always pass."""

    direction: Direction
    protocol: Protocol = Protocol.ANY
    port_min: int | None = None
    """With ``port_max``, the destination port range (tcp and udp only); None for every port."""
    port_max: int | None = None
    remote_cidr: str = ""
    """The peer's addresses (source for ingress, destination for egress); "" with a remote group."""
    remote_group: str = ""
    """The peer is any member of this group (its id); see ``GroupPolicy.members``."""


@dataclass(frozen=True)
class GroupPolicy:
    id: str
    rules: list[RuleSpec] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    """IPv4 addresses of every port in the group (on any host): what a remote-group rule matches."""


@dataclass(frozen=True)
class PortSecurity:
    """A port on this host and its groups. No groups: nothing passes but replies (Neutron's rule)."""

    port_id: str
    network_id: str
    ip: str
    mac: str
    groups: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HostSecurity:
    ports: list[PortSecurity] = field(default_factory=list)
    groups: list[GroupPolicy] = field(default_factory=list)
    """The groups of the ports above and every group their rules name as remote."""
