"""Names on tenant networks, as the controller hands them to a host's resolver.

The controller computes, for every network that has a port on a host, which names exist on it and
which addresses they answer with (``NetworkNames``). The host serves them to its own instances: an
instance sees the union of the networks it has a port on, so names resolve only between instances
that share a network, and each answer is the address on that shared network. Records come from the
controller (not from what one host has locally) so that, with several hosts, an instance also
resolves the peers that run elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RESOLVER_ADDRESS = "127.0.0.11"
"""Where the resolver listens inside every instance with ports, as Docker's embedded DNS does."""


@dataclass(frozen=True)
class NameRecord:
    """One name of one instance on one network. ``name`` is lower-case, without a trailing dot."""

    name: str
    address: str
    instance_id: str
    primary: bool = False
    """Whether ``name`` is the instance's own name (what a reverse lookup of ``address`` answers)."""


@dataclass(frozen=True)
class NetworkNames:
    network_id: str
    records: list[NameRecord] = field(default_factory=list)
    cidrs: list[str] = field(default_factory=list)
    """The network's subnets: reverse lookups inside them are answered here, never forwarded."""
