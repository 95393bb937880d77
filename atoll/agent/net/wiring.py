"""The kernel side of one host's tenant wiring, for ``dataplane``: the host's configuration, a
network's bridge, an instance's veths and NIC. ``HostNetwork`` keeps the desired state and decides
what to wire; these functions make one object match it, in the calling thread's namespace.

BIG TCP (``bigtcp``): with ``NetConfig.gso_size`` above 64 KiB, every host-side veth made here
takes that size, and an instance's NIC takes it while every other port of its network's bridge is an
instance's veth (``HostNetwork.nic_size``). The NIC is where TCP sizes its packets, and a device
handed a packet above its own limit segments it in software, which costs more than BIG TCP saves: a
VXLAN device takes no more than 64 KiB (this kernel's ``vxlan`` keeps ``tso_max_size`` there), a
router's leg leads to an uplink that may not, and so on. Bridged traffic never meets the host's own
routes (the bridges have no address), so the host's devices do not matter. Bridges are left alone:
their own size only matters for what the host sends from them, and the kernel resets it as ports
come and go.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

from atoll.agent.net import bigtcp, netlink, netns, publish
from atoll.agent.net.fdbpin import pin_mac
from atoll.agent.net.names import Names, alias_id, bridge_alias, veth_alias
from atoll.model.errors import RuntimeFailure
from atoll.model.network import PortSpec


@dataclass(frozen=True)
class NetConfig:
    names: Names
    netns_dir: Path
    """Where instance namespaces are bind-mounted: ``<run_dir>/netns``, on tmpfs like /run/netns."""
    host_netns: Path | None = None
    """The namespace that plays the host; None is the agent's own. Tests run whole hosts in namespaces."""
    routers_dir: Path | None = None
    """Where router namespaces are bind-mounted; default: ``routers`` next to ``netns_dir``."""
    publish_pool: IPv4Network = publish.DEFAULT_NETWORK
    """Addresses of the publishing veths (a /31 each); unique on the host, apart from tenant networks."""
    ip_forward: bool = True
    """Turn on ``net.ipv4.ip_forward`` when ports are published (see ``publish``)."""
    gso_size: int = bigtcp.LEGACY
    """BIG TCP: the GSO/GRO size of the veths made (see above); 65536 leaves the kernel's."""
    fast_path: bool = True
    """Established TCP flows past the bridges, with eBPF (``fastpath``); off: all take the bridges."""


@dataclass(frozen=True)
class Bridge:
    """A bridge this host needs: for instance ports, or for router legs (and then maybe an uplink)."""

    network_id: str
    mtu: int
    uplink: str = ""
    """Enslaved by the router plane (a missing uplink then fails that router only, not the host)."""


def bridge_mac(network_id: str) -> str:
    """Stable and locally administered, so a re-created bridge keeps its MAC."""
    digest = hashlib.sha256(network_id.encode()).digest()
    return ":".join(["02", *(f"{b:02x}" for b in digest[:5])])


def quiet_ipv6(ifname: str) -> None:
    """No IPv6 on the host's side of tenant networks: no link-local address, no NDP, no RAs."""
    if os.path.isdir(f"/proc/sys/net/ipv6/conf/{ifname}"):
        netlink.write_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", "1")


def ensure_bridge(ipr: netlink.Netlink, have: dict[str, netlink.Link], name: str, port: Bridge) -> None:
    link = have.get(name)
    if link is not None and link.kind == "bridge" and alias_id(link.alias) == port.network_id:
        if not link.up:
            netlink.set_up(ipr, link)
    elif link is not None:
        raise RuntimeFailure(
            f"a link named {name} exists and is not the bridge of network {port.network_id[:12]}"
        )
    else:
        link = have[name] = netlink.add_bridge(
            ipr, name, mac=bridge_mac(port.network_id), mtu=port.mtu, alias=bridge_alias(port.network_id)
        )
        quiet_ipv6(name)


def wire_ports(
    ipr: netlink.Netlink,
    names: Names,
    instance_id: str,
    path: Path,
    ports: list[PortSpec],
    *,
    gso_size: int,
    nic_size: Callable[[str], int],
) -> list[str]:
    """Each port's veth, made if missing (its NIC configured inside, with ``nic_size`` of its
    network), on its bridge and up. Returns the ids of the ports whose veths were made."""
    gateway_port = next((p for p in ports if p.gateway), None)
    made = []
    for port in ports:
        host = names.veth(port.id)
        bridge = netlink.link(ipr, names.bridge(port.network_id))
        assert bridge is not None
        link = netlink.link(ipr, host)
        if link is not None and alias_id(link.alias) != port.id:
            raise RuntimeFailure(f"a link named {host} exists and is not the veth of port {port.id[:12]}")
        if link is not None and link.master == bridge.index and link.up:
            continue
        if link is None:
            link = netlink.add_veth(
                ipr,
                host,
                peer=port.device,
                peer_netns=path,
                peer_mac=port.mac,
                mtu=port.mtu,
                alias=veth_alias(port.id, instance_id),
            )
            quiet_ipv6(host)
            if gso_size > bigtcp.LEGACY:
                bigtcp.apply(link.index, gso_size)
            inside = configure_inside(
                port, default_route=port is gateway_port, gso_size=nic_size(port.network_id)
            )
            netns.run_in(path, inside)
            made.append(port.id)
        netlink.attach(ipr, link, bridge, port.mtu)
        pin_mac(ipr, link, bridge, port.mac)  # it may have been learned on the VXLAN port
    return made


def configure_inside(
    port: PortSpec, *, default_route: bool, gso_size: int = bigtcp.LEGACY
) -> Callable[[], None]:
    def configure() -> None:
        with netlink.netlink() as ipr:
            netlink.configure_nic(
                ipr,
                port.device,
                address=port.ip,
                prefix_len=port.prefix_len,
                mtu=port.mtu,
                gateway=port.gateway,
                default_route=default_route,
            )
        if gso_size > bigtcp.LEGACY:
            fit_nic(port.device, gso_size)

    return configure


def fit_nic(device: str, gso_size: int) -> None:
    """Give an instance's NIC this GSO size (in the calling thread's namespace, the instance's)."""
    bigtcp.apply(socket.if_nametoindex(device), gso_size)
