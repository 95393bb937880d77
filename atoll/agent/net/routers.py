"""Routers on a host: one network namespace per router, with forwarding on and one veth per leg.

    network bridge  <p>b-<net>  ── <p>r-<port> ══ veth ══ qr-<port>  10.0.0.1/24 (the subnet's gateway)
    external bridge <p>b-<ext>  ── <p>r-<port> ══ veth ══ qg-<port>  203.0.113.5/24, + floating IPs /32
                    (enslaves the uplink)                  default route via the external gateway

The namespace is made by the agent and bind-mounted at ``<routers_dir>/<router id>`` (like instance
namespaces), so it lives on without any process in it and survives agent restarts. Inside it, the
``routernat`` table does SNAT and floating IPs. Everything here is level-triggered: ``converge`` takes
the whole list of routers wanted on this host, builds what is missing, corrects what drifted (addresses,
routes, rules) and removes legs and namespaces of routers that are gone. The bridges themselves belong
to ``HostNetwork``, which calls this under its lock, in the host's namespace, after making them.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable, Sequence
from contextlib import closing, suppress
from pathlib import Path

from pyroute2 import Conntrack
from pyroute2.netlink.exceptions import NetlinkError

from atoll.agent.net import netlink, netns, nft, routernat
from atoll.agent.net.names import ROUTER, Names, alias_id, router_leg_alias
from atoll.model.errors import RuntimeFailure
from atoll.model.routing import RouterLeg, RouterSpec

log = logging.getLogger(__name__)

RTPROT_STATIC = 4
"""Static routes are marked with this protocol, so those no longer wanted can be told apart."""
RTPROT_BOOT = 3
MAIN_TABLE = 254


class RouterPlane:
    def __init__(self, names: Names, routers_dir: Path) -> None:
        self.names = names
        self.routers_dir = routers_dir
        self._floating: dict[str, dict[str, str]] = {}
        self._rules: dict[str, str] = {}
        """Per router, the nft script last applied: the namespace is ours alone, so it only changes
        when we change it (and a re-made namespace starts without it)."""
        """Per router, the floating IP -> fixed IP mappings last applied (unknown after a restart)."""

    def path(self, router_id: str) -> Path:
        return self.routers_dir / router_id

    def converge(self, ipr: netlink.Netlink, routers: Sequence[RouterSpec], *, each_apart: bool) -> None:
        """In the host namespace: exactly these routers, and none other of ours. With ``each_apart``, a
        router that fails is logged and the others still converge."""
        for router in routers:
            try:
                self._router(ipr, router)
            except Exception:
                if not each_apart:
                    raise
                log.exception("could not converge router %s", router.id)
        self._sweep(ipr, routers)

    def _router(self, ipr: netlink.Netlink, router: RouterSpec) -> None:
        path = self.path(router.id)
        if not netns.is_netns(path):
            self._rules.pop(router.id, None)  # a new namespace has no rules yet, whatever we applied before
        netns.create(path, setup=_router_sysctls)
        new: list[str] = []
        for leg in router.legs:
            external = router.gateway is not None and leg is router.gateway.leg
            if self._leg(ipr, router.id, path, leg, external=external):
                new.append(self.names.router_leg(leg.port_id))
        mapped = {m.floating_ip: m.fixed_ip for m in router.gateway.floating} if router.gateway else {}
        old = self._floating.get(router.id)
        moved = {f for f in {*old, *mapped} if old.get(f) != mapped.get(f)} if old is not None else set()
        script = routernat.render(self.names.table, router)
        rules = script if self._rules.get(router.id) != script else None
        added = netns.run_in(path, _configure_inside(router, rules, forget=moved))
        self._rules[router.id] = script
        self._floating[router.id] = mapped
        netlink.wait_running(ipr, new)  # so the router routes once this returns
        if added:
            netns.run_in(path, lambda: _announce(added))

    def _leg(
        self, ipr: netlink.Netlink, router_id: str, path: Path, leg: RouterLeg, *, external: bool
    ) -> bool:
        """Make or repair one leg; True if it is new."""
        host = self.names.router_leg(leg.port_id)
        bridge = netlink.link(ipr, self.names.bridge(leg.network_id))
        if bridge is None:
            raise RuntimeFailure(f"the bridge of network {leg.network_id[:12]} is missing")
        link = netlink.link(ipr, host)
        if link is not None and alias_id(link.alias) != leg.port_id:
            raise RuntimeFailure(f"a link named {host} exists and is not the leg of port {leg.port_id[:12]}")
        new = link is None
        if link is None:
            link = netlink.add_veth(
                ipr,
                host,
                peer=routernat.inside_name(leg.port_id, external=external),
                peer_netns=path,
                peer_mac=leg.mac,
                mtu=leg.mtu,
                alias=router_leg_alias(leg.port_id, router_id),
            )
            if os.path.isdir(f"/proc/sys/net/ipv6/conf/{host}"):
                netlink.write_sysctl(f"net/ipv6/conf/{host}/disable_ipv6", "1")
        if link.master != bridge.index or not link.up:
            netlink.attach(ipr, link, bridge, leg.mtu)
        if leg.uplink:
            _enslave_uplink(ipr, bridge, leg.uplink)
        return new

    def _sweep(self, ipr: netlink.Netlink, routers: Sequence[RouterSpec]) -> None:
        """Legs first (a veth takes its peer along), then the namespaces of routers that are gone."""
        wanted = {self.names.router_leg(leg.port_id) for r in routers for leg in r.legs}
        for name in sorted(netlink.links(ipr)):
            if self.names.kind_of(name) == ROUTER and name not in wanted:
                log.info("removing router leg %s: no longer wanted on this host", name)
                netlink.delete(ipr, name)
        ids = {r.id for r in routers}
        self._floating = {k: v for k, v in self._floating.items() if k in ids}
        self._rules = {k: v for k, v in self._rules.items() if k in ids}
        if self.routers_dir.is_dir():
            for entry in self.routers_dir.iterdir():
                if entry.name not in ids:
                    log.info("removing the namespace of router %s: no longer wanted here", entry.name)
                    netns.remove(entry)


def _enslave_uplink(ipr: netlink.Netlink, bridge: netlink.Link, uplink: str) -> None:
    """The external network's bridge takes the host interface. It is not ours: it is never deleted,
    only released when the bridge goes; one already enslaved elsewhere is left alone, with an error."""
    link = netlink.link(ipr, uplink)
    if link is None:
        raise RuntimeFailure(f"uplink {uplink} of bridge {bridge.name} does not exist on this host")
    if link.master not in (0, bridge.index):
        raise RuntimeFailure(f"uplink {uplink} is already enslaved to another device")
    if link.master != bridge.index or not link.up:
        netlink.attach(ipr, link, bridge, link.mtu)


def _router_sysctls() -> None:
    netlink.write_sysctl("net/ipv4/ip_forward", "1")
    for scope in ("all", "default"):
        if os.path.isdir(f"/proc/sys/net/ipv6/conf/{scope}"):
            netlink.write_sysctl(f"net/ipv6/conf/{scope}/disable_ipv6", "1")


def _configure_inside(
    router: RouterSpec, rules: str | None, *, forget: set[str]
) -> Callable[[], list[tuple[str, str]]]:
    """Returns the (device, address) pairs it added, to be announced. ``rules``: the nft script, None when
    it is in place already. ``forget``: floating IPs whose
    mapping changed, whose tracked connections must go so that their next packets follow the new one."""

    def configure() -> list[tuple[str, str]]:
        gw = router.gateway
        wanted: dict[str, tuple[RouterLeg, set[tuple[str, int]]]] = {}
        for leg in router.interfaces:
            wanted[routernat.inside_name(leg.port_id, external=False)] = (leg, {(leg.ip, leg.prefix_len)})
        if gw is not None:
            addrs = {(gw.leg.ip, gw.leg.prefix_len), *((m.floating_ip, 32) for m in gw.floating)}
            wanted[routernat.inside_name(gw.leg.port_id, external=True)] = (gw.leg, addrs)
        with netlink.netlink() as ipr:
            lo = ipr.link_lookup(ifname="lo")
            if lo:
                ipr.link("set", index=lo[0], state="up")
            for name in netlink.links(ipr):
                inner = name.startswith((routernat.INTERFACE_PREFIX, routernat.GATEWAY_PREFIX))
                if inner and name not in wanted:
                    netlink.delete(ipr, name)
            added = []
            for name, (leg, addrs) in wanted.items():
                added += [(name, a) for a in netlink.set_addresses(ipr, name, addrs, mtu=leg.mtu)]
            _default_route(ipr, gw.nexthop if gw is not None else "")
            _static_routes(ipr, {(r.destination, r.nexthop) for r in router.routes})
        if rules is not None:
            nft.apply(rules)
        if forget:
            _forget_flows(forget)
        return added

    return configure


def _forget_flows(addresses: set[str]) -> None:
    """Delete the conntrack entries of flows to or from these addresses (in the calling thread's
    namespace): NAT is decided once per flow, so without this an open flow would keep the old mapping."""
    with closing(Conntrack()) as ct:
        for entry in list(ct.dump_entries()):
            if entry.tuple_orig.daddr in addresses or entry.tuple_reply.daddr in addresses:
                with suppress(NetlinkError):  # it may have ended meanwhile
                    ct.delete(entry)


def _announce(added: list[tuple[str, str]]) -> None:
    """Gratuitous ARP for addresses just added (in the router's namespace): neighbours that failed to
    resolve a gateway before the router joined, or knew a floating IP at another MAC, learn it now
    rather than after their cache entries expire. Sent once the bridge forwards on the new legs."""
    procs = [
        subprocess.Popen(
            ["busybox", "arping", "-U", "-q", "-c", "1", "-w", "1", "-I", device, "-s", address, address],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for device, address in added
    ]
    for proc in procs:
        proc.wait()


def _default_route(ipr: netlink.Netlink, nexthop: str) -> None:
    if nexthop:
        netlink.call(
            f"default route via {nexthop}",
            ipr.route,
            "replace",
            dst="0.0.0.0/0",
            gateway=nexthop,
            proto=RTPROT_BOOT,
        )
        return
    for msg in ipr.get_routes(family=2, table=MAIN_TABLE):
        if int(msg["dst_len"]) == 0:
            netlink.call("remove the default route", ipr.route, "del", dst="0.0.0.0/0")


def _static_routes(ipr: netlink.Netlink, wanted: set[tuple[str, str]]) -> None:
    have: set[tuple[str, str]] = set()
    for msg in ipr.get_routes(family=2, table=MAIN_TABLE):
        if int(msg["proto"]) != RTPROT_STATIC or int(msg["dst_len"]) == 0:
            continue
        route = (f"{msg.get_attr('RTA_DST')}/{msg['dst_len']}", str(msg.get_attr("RTA_GATEWAY") or ""))
        if route in wanted:
            have.add(route)
        else:
            netlink.call(f"remove route {route[0]}", ipr.route, "del", dst=route[0], proto=RTPROT_STATIC)
    for dst, nexthop in sorted(wanted - have):
        netlink.call(
            f"route {dst} via {nexthop}", ipr.route, "replace", dst=dst, gateway=nexthop, proto=RTPROT_STATIC
        )
