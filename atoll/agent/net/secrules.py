"""Security groups as nftables rules (pure: rendered from the controller's ``HostSecurity``).

Why the ``inet`` family, with ``br_netfilter``, and not the ``bridge`` family: stateful filtering needs
conntrack, and conntrack in the bridge family needs ``nf_conntrack_bridge``, which kernels may lack (the
reference machine's answers "Protocol error" to any ``ct`` expression in a bridge table). With
``br_netfilter``, packets bridged within a tenant bridge pass the IP hooks, with full conntrack, but
with the bridge as input and output device, so the port is not known by its device there. It is known
by its address: within one bridge every port has its own IP, and an anti-spoofing table in the
``bridge`` family (stateless: sets of veth . MAC . IP) drops frames whose source MAC or IP is not the
port's, and anything but IPv4 and ARP, so the source address of a bridged packet proves its port.

So, in the ``inet`` table, for traffic bridged within a tenant bridge (chain ``tenant``):

1. replies (``ct state established,related``) pass; invalid packets and IPv6 are dropped;
2. ``iifname . ip saddr vmap @sg_egress``: the sending port's egress chain; an allowed packet
   ``return``s (to be judged on ingress next), anything else is dropped;
3. ``iifname . ip daddr vmap @sg_ingress``: the receiving port's ingress chain accepts or drops;
4. what no map names (a router's port, say) passes, as before security groups.

Ports in the same groups share one pair of chains (named by a hash of the groups). Remote groups are
named sets of member addresses (``sgm_<group>``). Every change re-renders the
whole table and replaces it in one ``nft -f`` transaction, so a rule change, a membership change and
a port's new groups all take effect atomically. A port on the host that the policy does not (yet)
know gets chains that drop everything but replies: fail closed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
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


def _chain_id(groups: Sequence[str]) -> str:
    """Ports in the same groups share their chains: one pair per set of groups, not per port."""
    return hashlib.sha256(",".join(sorted(groups)).encode()).hexdigest()[:SHORT]


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
    chains: dict[str, list[str]] = {}
    veths: list[str] = []
    ip_ok: list[str] = []
    arp_ok: list[str] = []
    for port_id in sorted(ports):
        port = ports[port_id]
        member_of = [gid for gid in port_groups.get(port_id, []) if gid in groups]
        chain = _chain_id(member_of)
        key = f'"{names.bridge(port.network_id)}" . {port.ip}'
        egress.append(f"{key} : jump sge_{chain}")
        ingress.append(f"{key} : jump sgi_{chain}")
        if chain not in chains:
            rules = [r for gid in member_of for r in groups[gid].rules]  # none if unknown: fail closed
            body = []
            for direction, prefix in ((Direction.EGRESS, "sge"), (Direction.INGRESS, "sgi")):
                lines = [_rule(r, groups) for r in rules if r.direction == direction]
                body += [f"\tchain {prefix}_{chain} {{"]
                body += [f"\t\t{line}" for line in dict.fromkeys(line for line in lines if line)]
                body += ["\t\tdrop", "\t}"]
            chains[chain] = body
        veth = f'"{names.veth(port_id)}"'
        veths.append(veth)
        ip_ok.append(f"{veth} . {port.mac} . {port.ip}")
        arp_ok += [f"{veth} . {port.mac} . {port.ip}", f"{veth} . {port.mac} . 0.0.0.0"]
    for name, elements in (("sg_egress", egress), ("sg_ingress", ingress)):
        inet += [f"\tmap {name} {{", "\t\ttype ifname . ipv4_addr : verdict"]
        if elements:
            inet.append(f"\t\telements = {{ {', '.join(elements)} }}")
        inet.append("\t}")
    for body in chains.values():
        inet += body
    tenant = [
        "ct state established,related accept",
        "ct state invalid drop",
        "meta nfproto ipv6 drop",
        "iifname . ip saddr vmap @sg_egress",
        "iifname . ip daddr vmap @sg_ingress",
        "accept",
    ]
    bridge: list[str] = []
    for name, kind, elements in (
        ("ports", "ifname", veths),
        ("ip_ok", "ifname . ether_addr . ipv4_addr", ip_ok),
        ("arp_ok", "ifname . ether_addr . ipv4_addr", arp_ok),
    ):
        bridge += [f"\tset {name} {{", f"\t\ttype {kind}"]
        if elements:
            bridge.append(f"\t\telements = {{ {', '.join(elements)} }}")
        bridge.append("\t}")
    bridge += [
        "\tchain prerouting {",
        "\t\ttype filter hook prerouting priority -200; policy accept;",
        "\t\tiifname @ports jump spoof",
        "\t}",
        "\tchain spoof {",
        "\t\tether type ip iifname . ether saddr . ip saddr @ip_ok return",
        "\t\tether type arp iifname . arp saddr ether . arp saddr ip @arp_ok return",
        "\t\tdrop",
        "\t}",
    ]
    return Rendered(inet=inet, tenant=tenant, bridge=bridge)
