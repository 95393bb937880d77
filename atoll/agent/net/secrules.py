"""Security groups as nftables rules (pure: rendered from the controller's ``HostSecurity``).

Why the ``inet`` family, with ``br_netfilter``, and not the ``bridge`` family: stateful filtering needs
conntrack, and conntrack in the bridge family needs ``nf_conntrack_bridge``, which kernels may lack (the
reference machine's answers "Protocol error" to any ``ct`` expression in a bridge table). With
``br_netfilter``, packets bridged within a tenant bridge pass the IP hooks, with full conntrack, but
with the bridge as input and output device, so the port is not known by its device there. It is known
by its address: within one bridge every port has its own IP, and an anti-spoofing table in the
``bridge`` family (stateless, per veth) drops frames whose source MAC or IP is not the port's, so the
source address of a bridged packet is proof of the port that sent it.

So, in the ``inet`` table, for traffic bridged within a tenant bridge (chain ``tenant``):

1. replies (``ct state established,related``) pass; invalid packets and IPv6 are dropped;
2. ``iifname . ip saddr vmap @sg_egress``: the sending port's egress chain; an allowed packet
   ``return``s (to be judged on ingress next), anything else is dropped;
3. ``iifname . ip daddr vmap @sg_ingress``: the receiving port's ingress chain accepts or drops;
4. what no map names (a router's port, say) passes, as before security groups.

Remote groups are named sets of member addresses (``sgm_<group>``). Every change re-renders the
whole table and replaces it in one ``nft -f`` transaction, so a rule change, a membership change and
a port's new groups all take effect atomically. A port on the host that the policy does not (yet)
know gets chains that drop everything but replies: fail closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from atoll.agent.net.names import Names
from atoll.model.network import PortSpec
from atoll.model.secgroups import Direction, GroupPolicy, HostSecurity, Protocol, RuleSpec

SHORT = 16
"""Hex digits of an id in chain and set names (64 bits: collisions are not a practical concern)."""
ANY_CIDR = "0.0.0.0/0"


@dataclass(frozen=True)
class Rendered:
    inet: list[str] = field(default_factory=list)
    """Sets, maps and chains for the ``inet`` table (tab-indented lines)."""
    tenant: list[str] = field(default_factory=list)
    """The rules of chain ``tenant``, which sees every packet bridged within a tenant bridge."""
    bridge: list[str] = field(default_factory=list)
    """The whole ``bridge`` table's body: anti-spoofing per port."""


def _short(ident: str) -> str:
    return ident[:SHORT]


def _rule(rule: RuleSpec, groups: Mapping[str, GroupPolicy]) -> str | None:
    ingress = rule.direction == Direction.INGRESS
    peer = "saddr" if ingress else "daddr"
    parts = []
    if rule.remote_group:
        if rule.remote_group not in groups:
            return None
        parts.append(f"ip {peer} @sgm_{_short(rule.remote_group)}")
    elif rule.remote_cidr and rule.remote_cidr != ANY_CIDR:
        parts.append(f"ip {peer} {rule.remote_cidr}")
    if rule.protocol in (Protocol.TCP, Protocol.UDP) and rule.port_min is not None:
        high = rule.port_max if rule.port_max is not None else rule.port_min
        ports = str(rule.port_min) if high == rule.port_min else f"{rule.port_min}-{high}"
        parts.append(f"{rule.protocol.value} dport {ports}")
    elif rule.protocol != Protocol.ANY:
        parts.append(f"meta l4proto {rule.protocol.value}")
    parts.append("accept" if ingress else "return")
    return " ".join(parts)


def render(names: Names, policy: HostSecurity, ports: Mapping[str, PortSpec]) -> Rendered:
    """Rules for ``ports`` (those wired on this host, by id) as ``policy`` says."""
    groups = {g.id: g for g in policy.groups}
    port_groups = {p.port_id: p.groups for p in policy.ports}
    inet: list[str] = []
    for group in sorted(groups.values(), key=lambda g: g.id):
        inet += [f"\tset sgm_{_short(group.id)} {{", "\t\ttype ipv4_addr", "\t\tflags interval"]
        if group.members:
            inet.append(f"\t\telements = {{ {', '.join(group.members)} }}")
        inet.append("\t}")
    egress: list[str] = []
    ingress: list[str] = []
    chains: list[str] = []
    spoof: list[str] = []
    bridge_chains: list[str] = []
    for port_id in sorted(ports):
        port = ports[port_id]
        short = _short(port_id)
        key = f'"{names.bridge(port.network_id)}" . {port.ip}'
        egress.append(f"{key} : jump sge_{short}")
        ingress.append(f"{key} : jump sgi_{short}")
        rules = [r for gid in port_groups.get(port_id, []) if gid in groups for r in groups[gid].rules]
        for direction, chain, last in ((Direction.EGRESS, "sge", "drop"), (Direction.INGRESS, "sgi", "drop")):
            chains.append(f"\tchain {chain}_{short} {{")
            lines = [_rule(r, groups) for r in rules if r.direction == direction]
            chains += [f"\t\t{line}" for line in dict.fromkeys(line for line in lines if line)]
            chains += [f"\t\t{last}", "\t}"]
        veth = names.veth(port_id)
        spoof.append(f'"{veth}" : jump spoof_{short}')
        bridge_chains += [
            f"\tchain spoof_{short} {{",
            f"\t\tether saddr != {port.mac} drop",
            f"\t\tether type ip ip saddr != {port.ip} drop",
            f"\t\tether type arp arp saddr ether != {port.mac} drop",
            f"\t\tether type arp arp saddr ip != {{ {port.ip}, 0.0.0.0 }} drop",
            "\t\tether type ip6 drop",
            "\t}",
        ]
    for name, elements in (("sg_egress", egress), ("sg_ingress", ingress)):
        inet += [f"\tmap {name} {{", "\t\ttype ifname . ipv4_addr : verdict"]
        if elements:
            inet.append(f"\t\telements = {{ {', '.join(elements)} }}")
        inet.append("\t}")
    inet += chains
    tenant = [
        "ct state established,related accept",
        "ct state invalid drop",
        "meta nfproto ipv6 drop",
        "iifname . ip saddr vmap @sg_egress",
        "iifname . ip daddr vmap @sg_ingress",
        "accept",
    ]
    bridge = ["\tchain prerouting {", "\t\ttype filter hook prerouting priority -200; policy accept;"]
    if spoof:
        bridge.append(f"\t\tiifname vmap {{ {', '.join(spoof)} }}")
    bridge += ["\t}", *bridge_chains]
    return Rendered(inet=inet, tenant=tenant, bridge=bridge)
