"""Overlay (VXLAN) networks on the controller's side: VNIs, the forwarding state each host needs, and the
nudge that makes other hosts pick up a change at once.

- A VNI is drawn at random from the whole 24-bit space and kept in ``overlay_segments``, whose unique
  key has the last word: two controllers (or two test clouds on one machine, whose VXLAN devices share
  the kernel's UDP port) practically never draw the same one, and if they do, the insert fails and the
  caller retries. Sequential numbers would collide between independent clouds every time.
- ``plan_for_host`` is pure: given where every port of every overlay network is and each host's
  underlay address, it says what one host must program (remote MAC -> remote host, and the peer hosts
  that get flooded frames). ``overlay_networks`` loads the rows and calls it.
- The MTU of an overlay network defaults to the smallest underlay MTU any host reported, minus the
  VXLAN overhead, so an instance never sends a frame that the underlay would have to fragment.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from atoll.model.errors import InvalidInput
from atoll.model.network import NetworkType
from atoll.model.overlay import DEFAULT_UNDERLAY_MTU, VXLAN_OVERHEAD, OverlayNetwork, RemotePort
from atoll.services.context import Controller
from atoll.store.models import InstanceRow, IpAllocationRow, NetworkRow, PortRow
from atoll.store.overlaynet import HostUnderlayRow, OverlaySegmentRow
from atoll.store.routing import RouterInterfaceRow, RouterRow

log = logging.getLogger(__name__)

VNI_MIN = 1
VNI_MAX = (1 << 24) - 1
VNI_DRAWS = 16


@dataclass(frozen=True)
class PortPlace:
    """Where one port of an overlay network is: its network, host, MAC and address."""

    network_id: str
    port_id: str
    host_id: str
    mac: str
    ip: str


@dataclass(frozen=True)
class Segment:
    vni: int
    mtu: int


def plan_for_host(
    host_id: str,
    ports: Iterable[PortPlace],
    segments: Mapping[str, Segment],
    underlays: Mapping[str, str],
) -> list[OverlayNetwork]:
    """What ``host_id`` programs: every overlay network with a port on it, with the ports elsewhere whose
    host has an underlay address, and those hosts as flooding peers. Ports on this host, on hosts without
    an address, or on networks without a segment are left out. Sorted, so equal inputs give equal plans."""
    by_network: dict[str, list[PortPlace]] = {}
    for place in ports:
        if place.network_id in segments:
            by_network.setdefault(place.network_id, []).append(place)
    own = underlays.get(host_id, "")
    plans = []
    for network_id in sorted(by_network):
        places = by_network[network_id]
        if not any(p.host_id == host_id for p in places):
            continue
        remote = sorted(
            (
                RemotePort(p.port_id, p.mac, p.ip, p.host_id, underlays[p.host_id])
                for p in places
                if p.host_id != host_id and underlays.get(p.host_id) and underlays[p.host_id] != own
            ),
            key=lambda r: (r.underlay, r.mac),
        )
        segment = segments[network_id]
        peers = sorted({r.underlay for r in remote})
        plans.append(OverlayNetwork(network_id, segment.vni, segment.mtu, peers=peers, remote_ports=remote))
    return plans


def overlay_networks(ctl: Controller, host_id: str) -> list[OverlayNetwork]:
    with ctl.sessions() as s:
        segments = {
            network_id: Segment(vni, mtu)
            for network_id, vni, mtu in s.execute(
                select(OverlaySegmentRow.network_id, OverlaySegmentRow.vni, NetworkRow.mtu).join(
                    NetworkRow, NetworkRow.id == OverlaySegmentRow.network_id
                )
            )
        }
        if not segments:
            return []
        rows = s.execute(
            select(PortRow.network_id, PortRow.id, InstanceRow.host_id, PortRow.mac, IpAllocationRow.address)
            .join(InstanceRow, InstanceRow.id == PortRow.instance_id)
            .join(IpAllocationRow, IpAllocationRow.port_id == PortRow.id)
            .where(PortRow.network_id.in_(list(segments)))
        )
        places = [PortPlace(network, port, host, mac, ip) for network, port, host, mac, ip in rows]
        places += router_leg_places(s, list(segments))
        underlays = {
            host: address
            for host, address in s.execute(select(HostUnderlayRow.host_id, HostUnderlayRow.address))
        }
    return plan_for_host(host_id, places, segments, underlays)


def router_leg_places(s: Session, network_ids: list[str]) -> list[PortPlace]:
    """Routers' legs on these overlay networks, placed on the host each router is bound to: the router's
    host gets the network's VXLAN device, the other hosts an entry for the leg's MAC pointing there."""
    rows = s.execute(
        select(PortRow.network_id, PortRow.id, RouterRow.host_id, PortRow.mac, IpAllocationRow.address)
        .join(RouterInterfaceRow, RouterInterfaceRow.port_id == PortRow.id)
        .join(RouterRow, RouterRow.id == RouterInterfaceRow.router_id)
        .join(IpAllocationRow, IpAllocationRow.port_id == PortRow.id)
        .where(PortRow.network_id.in_(network_ids), RouterRow.host_id.is_not(None))
    )
    return [PortPlace(network, port, host, mac, ip) for network, port, host, mac, ip in rows if host]


def allocate_vni(s: Session, network_id: str) -> int:
    """A free VNI for a new overlay network, recorded in ``s`` (the network's own transaction)."""
    for _ in range(VNI_DRAWS):
        vni = VNI_MIN + secrets.randbelow(VNI_MAX - VNI_MIN + 1)
        if (
            s.get(OverlaySegmentRow, network_id) is None
            and s.scalar(select(OverlaySegmentRow.network_id).where(OverlaySegmentRow.vni == vni)) is None
        ):
            s.add(OverlaySegmentRow(network_id=network_id, vni=vni))
            return vni
    raise RuntimeError("no free VNI found")  # 16 misses in 16 million: the table is nearly full


def segment_vni(s: Session, network_id: str) -> int | None:
    row = s.get(OverlaySegmentRow, network_id)
    return row.vni if row is not None else None


def underlay_mtu(s: Session) -> int:
    """The smallest MTU any host's underlay reported (so every host can carry the network's frames)."""
    smallest = s.scalar(select(func.min(HostUnderlayRow.mtu)))
    return int(smallest) if smallest else DEFAULT_UNDERLAY_MTU


def network_mtu(s: Session, kind: NetworkType, requested: int | None) -> int:
    """The MTU of a new network: as requested, or the default of its type. An overlay network's MTU
    must leave room for the VXLAN header within the underlay's."""
    if kind != NetworkType.OVERLAY:
        return requested if requested is not None else DEFAULT_UNDERLAY_MTU
    ceiling = underlay_mtu(s) - VXLAN_OVERHEAD
    if requested is None:
        return ceiling
    if requested > ceiling:
        raise InvalidInput(
            f"mtu: {requested} is too large for an overlay network: at most {ceiling} "
            f"(the underlay's {ceiling + VXLAN_OVERHEAD} minus {VXLAN_OVERHEAD} for VXLAN)"
        )
    return requested


async def notify_hosts(ctl: Controller, *, except_host: str = "") -> None:
    """Tell the other hosts' agents to fetch their overlay entries now, rather than at their next
    reconcile. A host that cannot be reached catches up when it reconciles."""
    agents = [a for a in ctl.agents.all() if a.host_id != except_host]
    if not agents:
        return
    results = await asyncio.gather(*(a.refresh_overlay() for a in agents), return_exceptions=True)
    for agent, result in zip(agents, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("host %s did not take the overlay update: %s", agent.host_id, result)
