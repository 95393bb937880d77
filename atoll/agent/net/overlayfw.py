"""The host's VXLAN port takes packets from peer hosts only.

A VXLAN device accepts any UDP packet to its port whose VNI it knows, and puts the inner frame on the
tenant's bridge. Anyone who can reach the host's underlay address could therefore inject frames into a
tenant network by guessing a VNI. So while the host has overlay networks, a table of its own
(``inet <table>_vxlan``, apart from the dataplane's tables so each can be rewritten whole) drops
packets to the VXLAN port from any source that is not a current peer host. With no overlay network on
the host the table is deleted, and the port is closed anyway (no VXLAN device listens).

The same table exempts tunnel packets between peers from connection tracking (``notrack`` at the
``raw`` priority, in and out): the filter above is stateless, the inner packets are tracked on their
own where security groups need it, and tracking the outer UDP flow only cost a lookup per packet. A
host firewall that accepts the VXLAN port only as ``ct state new,established`` would need to accept
``untracked`` too.

The port is the cloud's (``ATOLL_VXLAN_PORT``): another VXLAN user on the same host (Docker swarm uses
4789 too) needs Atoll on another port.
"""

from __future__ import annotations

from collections.abc import Iterable

from atoll.agent.net import nft
from atoll.agent.net.names import Names


def table(names: Names) -> str:
    return f"{names.table}_vxlan"


def render(names: Names, port: int, peers: Iterable[str]) -> str:
    t = table(names)
    addresses = sorted(set(peers))
    lines = [
        f"table inet {t}",
        f"delete table inet {t}",
        f"table inet {t} {{",
        '\tcomment "Atoll overlay: VXLAN from peer hosts only; managed by the Atoll agent"',
        "\tset peers {",
        "\t\ttype ipv4_addr",
    ]
    if addresses:
        lines.append(f"\t\telements = {{ {', '.join(addresses)} }}")
    lines += [
        "\t}",
        "\tchain input {",
        f"\t\ttype filter hook input priority {nft.PRIORITY}; policy accept;",
        f"\t\tudp dport {port} ip saddr != @peers counter drop",
        "\t}",
        # Tunnel packets between peers are not tracked: nothing here needs their state, and conntrack
        # (active in the host once any table uses it) would otherwise look up every outer packet.
        "\tchain prerouting {",
        "\t\ttype filter hook prerouting priority raw; policy accept;",
        f"\t\tudp dport {port} ip saddr @peers notrack",
        "\t}",
        "\tchain output {",
        "\t\ttype filter hook output priority raw; policy accept;",
        f"\t\tudp dport {port} ip daddr @peers notrack",
        "\t}",
        "}",
        "",
    ]
    return "\n".join(lines)


def render_delete(names: Names) -> str:
    t = table(names)
    return f"table inet {t}\ndelete table inet {t}\n"


def present(names: Names) -> bool:
    return ("inet", table(names)) in nft.tables()
