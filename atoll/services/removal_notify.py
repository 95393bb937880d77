"""Telling the hosts that an instance is gone, once its row is deleted.

An instance leaves traces on hosts other than its own: its MAC and address in the overlay's forwarding
entries, its address in the member sets of its security groups, its names in the resolvers, and a
floating IP's 1:1 NAT in a router. Every way an instance goes (a user's removal, the Docker API's, and
``--rm`` when it exits) tells the hosts at once, so that its address, which IPAM hands out again at
once, never reaches the next holder with the old one's privileges (a remote group's membership) or
its floating IP. A host that cannot be reached catches up at its next reconcile.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from atoll.services import dnsrecords, overlay
from atoll.services.context import Controller
from atoll.services.routernudge import routing_changed
from atoll.services.secgroup_notify import security_changed
from atoll.store.models import PortRow
from atoll.store.routing import FloatingIpRow


@dataclass(frozen=True)
class Footprint:
    """What of an instance other hosts hold, read before its row (and its ports) are deleted."""

    networks: list[str]
    """The networks it has ports on."""
    floating: bool
    """Whether a floating IP is associated with one of its ports (it is disassociated with them)."""


def footprint(ctl: Controller, instance_id: str) -> Footprint:
    floating = (
        select(FloatingIpRow.id)
        .join(PortRow, PortRow.id == FloatingIpRow.fixed_port_id)
        .where(PortRow.instance_id == instance_id)
        .limit(1)
    )
    with ctl.sessions() as s:
        has_floating = s.scalar(floating) is not None
    return Footprint(dnsrecords.instance_networks(ctl, instance_id), has_floating)


async def removed(ctl: Controller, gone: Footprint, *, host_id: str) -> None:
    """Tell the hosts; ``host_id``, the instance's own, has already forgotten it (its removal did)."""
    if gone.networks:
        await overlay.notify_hosts(ctl, except_host=host_id)
        await security_changed(ctl)  # its addresses leave their groups on every host
    if gone.floating:
        await routing_changed(ctl)  # the router drops its floating IP's NAT now
    await dnsrecords.announce(ctl, gone.networks)
