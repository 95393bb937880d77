"""What a host's own networking looks like, for the controller: its underlay address and MTU, and the
networks it is on (addresses and routes of interfaces Atoll did not make).

Interfaces that are left out: loopback, and every link whose alias says an Atoll dataplane made it
(``atoll ...``, whatever the prefix of that dataplane) or whose name has this agent's prefix. Default
routes are left out too: they cover every address and say nothing about which are in use.

The underlay address is the configured one, else the address of the interface the default route
leaves by, else the first global address; "" when the host has none (then it has no overlay peers).
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Interface, IPv4Network

from atoll.agent.net import linkdump, netlink
from atoll.model.overlay import DEFAULT_UNDERLAY_MTU, HostCidr, HostNetworkReport

IFF_LOOPBACK = 0x8
RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE = 0


def scan(prefix: str, underlay_ip: str = "") -> HostNetworkReport:
    """The calling thread's namespace seen as a host (see ``netns.run_in``)."""
    with netlink.netlink() as ipr:
        names: dict[int, str] = {}
        mtus: dict[int, int] = {}
        for link in linkdump.dump():  # every veth of the host: without pyroute2's objects
            mtus[link.index] = link.mtu or DEFAULT_UNDERLAY_MTU
            if link.flags & IFF_LOOPBACK or link.alias.startswith("atoll ") or link.name.startswith(prefix):
                continue
            names[link.index] = link.name
        addresses: list[tuple[int, IPv4Interface]] = []
        for msg in ipr.get_addr(family=socket.AF_INET):
            if int(msg["index"]) in names and msg["scope"] == RT_SCOPE_UNIVERSE:
                addresses.append(
                    (int(msg["index"]), IPv4Interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}"))
                )
        cidrs = {(names[index], str(address.network)) for index, address in addresses}
        default_oif = 0
        for msg in ipr.get_routes(family=socket.AF_INET, table=RT_TABLE_MAIN):
            oif = int(msg.get_attr("RTA_OIF") or 0)
            if msg["dst_len"] == 0:
                default_oif = default_oif or oif
            elif oif in names:
                cidrs.add((names[oif], str(IPv4Network(f"{msg.get_attr('RTA_DST')}/{msg['dst_len']}"))))
    underlay = underlay_ip
    if not underlay:
        preferred = [a for index, a in addresses if index == default_oif] or [a for _, a in addresses]
        underlay = str(preferred[0].ip) if preferred else ""
    owner = next((index for index, a in addresses if str(a.ip) == underlay), 0)
    return HostNetworkReport(
        underlay_ip=underlay,
        underlay_mtu=mtus.get(owner, DEFAULT_UNDERLAY_MTU),
        cidrs=[HostCidr(interface, cidr) for interface, cidr in sorted(cidrs)],
    )
