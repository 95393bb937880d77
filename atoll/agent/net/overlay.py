"""Overlay networks on one host: a VXLAN device on the bridge of each overlay network that has a port
here, and its forwarding entries, as the controller describes them (``atoll.model.overlay``).

    host A                                                   host B
    atb-<net> ── atv-<port> ══ eth0 of an instance           atb-<net> ── atv-<port> ══ eth0
        └── atx-<net>  VXLAN, VNI n, nolearning                  └── atx-<net>  VXLAN, VNI n
              fdb: 00:00:00:00:00:00 -> B (flooding)                   fdb: 00:00:00:00:00:00 -> A
                   <MAC of B's port> -> B                                   <MAC of A's port> -> A
            ════════════ UDP <vxlan port> over the underlay (A's address <-> B's) ════════════

- The device learns nothing from the wire and no multicast group is used: broadcast and unknown
  unicast (ARP requests, say) are copied to each peer host by the all-zero entries, and unicast to a
  remote MAC goes straight to its host. The bridge still learns which port a MAC is behind, as usual.
- A port that moves to another host keeps its MAC and address: the controller's next description
  points the MAC at the new host, ``converge`` replaces the entry, and the instance's gratuitous ARP
  (``arp_notify``) updates the bridges and neighbours on the way.
- ``converge`` is level-triggered like the rest of the dataplane: it builds what is missing, fixes a
  device whose settings changed (VNI, port, underlay address), removes entries nobody described, and
  deletes every VXLAN device of ours whose network has no bridge (no port) left on this host. A
  network with no port on another host (no peer) has no device: it would carry nothing, and making
  and deleting it cost ~100 ms per `docker run --rm` on a busy host; the first peer brings it. The
  bridges themselves belong to ``HostNetwork``; a network whose bridge does not exist yet is done by the
  next call, which the agent makes after each attach.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from atoll.agent.net import netlink, netns, nft, overlayfw, vxlan
from atoll.agent.net.fastpath import FastPath, Overlay
from atoll.agent.net.names import Names, alias_id, bridge_alias
from atoll.model.errors import RuntimeFailure
from atoll.model.overlay import DEFAULT_VXLAN_PORT, OverlayNetwork

log = logging.getLogger(__name__)

VXLAN = "x"


@dataclass(frozen=True)
class OverlayConfig:
    names: Names
    underlay_ip: str = ""
    """The address VXLAN packets leave from; "" lets the kernel pick by route (fine on one uplink)."""
    port: int = DEFAULT_VXLAN_PORT
    host_netns: Path | None = None


def vxlan_name(names: Names, network_id: str) -> str:
    return f"{names.prefix}{VXLAN}-{network_id[:8]}"


def vxlan_alias(network_id: str) -> str:
    return f"atoll vxlan {network_id}"


def is_vxlan_name(names: Names, ifname: str) -> bool:
    head = f"{names.prefix}{VXLAN}-"
    return ifname.startswith(head) and len(ifname) == len(head) + 8


def wanted_entries(network: OverlayNetwork) -> set[vxlan.Entry]:
    flood = {vxlan.Entry(vxlan.FLOOD_MAC, peer) for peer in network.peers}
    return flood | {vxlan.Entry(p.mac, p.underlay) for p in network.remote_ports}


class OverlayPlane:
    def __init__(self, config: OverlayConfig, fast: FastPath | None = None) -> None:
        self.config = config
        self.fast = fast
        """The host's fast path (``HostNetwork.fast``), told about the VXLAN devices and remote ports."""
        self.names = config.names
        self._lock = asyncio.Lock()
        self._rules: str | None = None
        """The firewall script last applied (None: our table is absent)."""
        self._swept = False
        """Whether a table left by an earlier agent was looked for (once is enough)."""

    async def converge(self, networks: Iterable[OverlayNetwork]) -> None:
        """Make this host's VXLAN devices and entries exactly ``networks`` (those with a bridge here)."""
        desired = {n.network_id: n for n in networks}
        async with self._lock:
            await asyncio.to_thread(netns.run_in, self.config.host_netns, lambda: self._converge(desired))

    def _converge(self, desired: dict[str, OverlayNetwork]) -> None:
        with netlink.netlink() as ipr:
            links = netlink.links(ipr)
            kept: set[str] = set()
            devices: dict[str, int] = {}
            for network_id, network in sorted(desired.items()):
                bridge = links.get(self.names.bridge(network_id))
                if bridge is None or bridge.alias != bridge_alias(network_id):
                    continue  # no port here (yet): HostNetwork makes the bridge, the next call the device
                if not network.peers:
                    continue  # no other host: a device would carry nothing (made when a peer comes)
                kept.add(vxlan_name(self.names, network_id))  # even if this attempt fails: keep what works
                try:
                    devices[network_id] = self._ensure(ipr, links, bridge, network)
                except RuntimeFailure:
                    log.exception("could not set up the overlay of network %s", network_id[:12])
            for name in sorted(links):
                if is_vxlan_name(self.names, name) and name not in kept:
                    log.info("removing %s: its network has no port on this host", name)
                    netlink.delete(ipr, name)
            if self.fast is not None:
                self.fast.set_overlay(self._fast_view(ipr, desired, devices))
        peers = {
            peer
            for network_id, n in desired.items()
            if vxlan_name(self.names, network_id) in kept
            for peer in n.peers
        }
        self._apply_firewall(bool(kept), peers)

    def _fast_view(
        self, ipr: netlink.Netlink, desired: dict[str, OverlayNetwork], devices: dict[str, int]
    ) -> Overlay:
        """The overlay as the fast path needs it, with the host's routes to the peers: their packets
        leave by those devices and are taken to arrive by them."""
        peers = {peer for n in devices for peer in desired[n].peers}
        routes = {peer: found for peer in peers if (found := netlink.route_to(ipr, peer)) is not None}
        sources = sorted({r.source for r in routes.values() if r.source})
        return Overlay(
            devices=devices,
            vnis={n: desired[n].vni for n in devices},
            remote={n: {p.mac: p.underlay for p in desired[n].remote_ports} for n in devices},
            peers=peers,
            routes=routes,
            port=self.config.port,
            local_ip=self.config.underlay_ip or (sources[0] if len(sources) == 1 else ""),
        )

    def _apply_firewall(self, active: bool, peers: set[str]) -> None:
        """Our VXLAN port open to exactly ``peers`` while there are devices; no table without them."""
        if self._rules is not None and not overlayfw.present(self.names):
            self._rules = None  # someone removed the table: write it again
        if not active:
            # Ours, or (looked for once) left by an earlier run of the agent.
            if (self._rules is not None or not self._swept) and overlayfw.present(self.names):
                nft.apply(overlayfw.render_delete(self.names))
            self._rules, self._swept = None, True
            return
        script = overlayfw.render(self.names, self.config.port, peers)
        if script != self._rules:
            nft.apply(script)
            self._rules = script

    def _ensure(
        self,
        ipr: netlink.Netlink,
        links: dict[str, netlink.Link],
        bridge: netlink.Link,
        network: OverlayNetwork,
    ) -> int:
        """Make the network's device and entries as described; its ifindex."""
        name = vxlan_name(self.names, network.network_id)
        link = links.get(name)
        if link is not None:
            if alias_id(link.alias) != network.network_id:
                raise RuntimeFailure(
                    f"a link named {name} exists and is not the VXLAN device of network "
                    f"{network.network_id[:12]}"
                )
            have = vxlan.info(ipr, link.index)
            if have is None or not self._matches(have, network.vni):
                log.info("re-creating %s: its settings changed (%s)", name, have)
                netlink.delete(ipr, name)
                link = None
        if link is None:
            link = vxlan.add(
                ipr,
                name,
                vni=network.vni,
                port=self.config.port,
                local=self.config.underlay_ip,
                mtu=network.mtu,
                alias=vxlan_alias(network.network_id),
            )
            if os.path.isdir(f"/proc/sys/net/ipv6/conf/{name}"):
                netlink.write_sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "1")
        if link.master != bridge.index or not link.up or link.mtu != network.mtu:
            netlink.attach(ipr, link, bridge, network.mtu)
        have_entries = vxlan.entries(ipr, link.index)
        want_entries = wanted_entries(network)
        for entry in sorted(have_entries - want_entries):
            vxlan.delete_entry(ipr, link.index, entry)
        for entry in sorted(want_entries - have_entries):
            vxlan.add_entry(ipr, link.index, entry)
        return link.index

    def _matches(self, have: vxlan.VxlanInfo, vni: int) -> bool:
        local_ok = not self.config.underlay_ip or have.local == self.config.underlay_ip
        return have.vni == vni and have.port == self.config.port and not have.learning and local_ok
