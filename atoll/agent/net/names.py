"""Names of the kernel objects the dataplane owns. Everything carries a prefix, so Atoll never touches a
link it did not make, two agents (or a test run and a real cloud) can share a machine, and a restarted
agent finds its own objects by name alone.

Interface names have at most 15 characters: ``<prefix><kind>-<8 hex of the id>``, with a prefix of 1 to
5 characters, e.g. ``atb-1a2b3c4d`` for the bridge of a network and ``atv-5e6f7a8b`` for the host end of a
port's veth. Eight hex digits can collide; the full id is kept in the link's alias, and a link whose
alias names another id is never taken for ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from atoll.model.errors import InvalidInput

DEFAULT_PREFIX = "at"
DEFAULT_TABLE = "atoll"
BRIDGE = "b"
VETH = "v"
ROUTER = "r"
"""The host end of a router's leg (its other end is in the router's namespace)."""
PUBLISH = "p"
"""The host end of an instance's publishing veth (``atoll.agent.net.publish``), named by the instance."""
KINDS = (BRIDGE, VETH, ROUTER, PUBLISH)
ID_CHARS = 8
IFNAMSIZ = 15
_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,4}$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Names:
    prefix: str = DEFAULT_PREFIX
    table: str = DEFAULT_TABLE
    """The nftables table, in the ``inet`` and ``arp`` families."""

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise InvalidInput(f"net prefix: {self.prefix!r} must be 1-5 lowercase letters or digits")
        if not _TABLE.match(self.table):
            raise InvalidInput(f"nft table: {self.table!r} must be a plain identifier")

    def _name(self, kind: str, ident: str) -> str:
        return f"{self.prefix}{kind}-{ident[:ID_CHARS]}"

    def bridge(self, network_id: str) -> str:
        return self._name(BRIDGE, network_id)

    def veth(self, port_id: str) -> str:
        """The host end of a port's veth pair; the other end is in the instance's namespace."""
        return self._name(VETH, port_id)

    def router_leg(self, port_id: str) -> str:
        """The host end of a router's veth on a network's bridge."""
        return self._name(ROUTER, port_id)

    def publish(self, instance_id: str) -> str:
        """The host end of the veth that carries an instance's published ports."""
        return self._name(PUBLISH, instance_id)

    def wildcard(self, kind: str) -> str:
        """The nftables pattern that matches every name of ``kind``."""
        return f"{self.prefix}{kind}-*"

    def kind_of(self, ifname: str) -> str | None:
        """``BRIDGE``, ``VETH``, ``ROUTER`` or ``PUBLISH`` for a name this prefix owns, else None."""
        for kind in KINDS:
            head = f"{self.prefix}{kind}-"
            if ifname.startswith(head) and len(ifname) == len(head) + ID_CHARS:
                return kind
        return None


def bridge_alias(network_id: str) -> str:
    return f"atoll network {network_id}"


def veth_alias(port_id: str, instance_id: str) -> str:
    return f"atoll port {port_id} instance {instance_id}"


def router_leg_alias(port_id: str, router_id: str) -> str:
    return f"atoll port {port_id} router {router_id}"


def publish_alias(instance_id: str) -> str:
    return f"atoll publish {instance_id}"


def alias_id(alias: str | None) -> str:
    """The network or port id an alias written by ``bridge_alias``/``veth_alias`` names."""
    parts = (alias or "").split()
    return parts[2] if len(parts) >= 3 and parts[0] == "atoll" else ""
