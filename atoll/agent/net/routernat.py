"""The nftables rules inside one router's namespace (pure): SNAT, floating IPs and the external
leg's guard. The namespace is the router's alone, so the table is replaced whole on every change.

- ``prerouting`` (dstnat): a packet for a floating IP is sent to its fixed IP. The floating IP is
  also an address (/32) of the external leg, so the router answers ARP for it on the external bridge.
  From the inside too (hairpin): then ``postrouting`` masquerades it behind the router's interface
  address, so the reply comes back through the router to be translated.
- ``postrouting`` (srcnat): a packet of a fixed IP that has a floating IP leaves as the floating IP;
  with SNAT on, every other packet leaving by the external leg leaves with the router's address.
- ``forward``: with SNAT on, the outside may only answer (conntrack) or use a floating IP; it can
  never address an instance's fixed IP through the router, so projects that share an external network
  reach each other only through floating IPs. With SNAT off the router routes both ways, as Neutron
  does, for an outside that routes the tenant subnets to it.
"""

from __future__ import annotations

from atoll.model.routing import RouterSpec

INTERFACE_PREFIX = "qr-"
GATEWAY_PREFIX = "qg-"


def inside_name(port_id: str, *, external: bool) -> str:
    """A leg's name inside the router's namespace (Neutron's ``qr-``/``qg-``)."""
    return f"{GATEWAY_PREFIX if external else INTERFACE_PREFIX}{port_id[:8]}"


def render(table: str, router: RouterSpec) -> str:
    """The ``nft -f`` script for the router's table; empty when the router needs no rules."""
    gw = router.gateway
    head = [f"table ip {table}", f"delete table ip {table}"]
    if gw is None:
        return "\n".join([*head, ""])
    ext = inside_name(gw.leg.port_id, external=True)
    lines = [*head, f"table ip {table} {{", "\tchain prerouting {"]
    lines.append("\t\ttype nat hook prerouting priority dstnat; policy accept;")
    for m in gw.floating:
        lines.append(f"\t\tip daddr {m.floating_ip} dnat to {m.fixed_ip}")
    lines += ["\t}", "\tchain postrouting {", "\t\ttype nat hook postrouting priority srcnat; policy accept;"]
    if gw.floating:  # hairpin: an instance behind this router reaching a floating IP of this router
        inner = f"{INTERFACE_PREFIX}*"
        lines.append(f'\t\tiifname "{inner}" oifname "{inner}" ct status dnat masquerade')
    for m in gw.floating:
        lines.append(f'\t\toifname "{ext}" ip saddr {m.fixed_ip} snat to {m.floating_ip}')
    if gw.snat:
        lines.append(f'\t\toifname "{ext}" masquerade')
    lines += ["\t}", "\tchain forward {", "\t\ttype filter hook forward priority filter; policy accept;"]
    if gw.snat:
        lines += [
            f'\t\tiifname "{ext}" ct state established,related accept',
            f'\t\tiifname "{ext}" ct status dnat accept',
            f'\t\tiifname "{ext}" drop',
        ]
    lines += ["\t}", "}", ""]
    return "\n".join(lines)
