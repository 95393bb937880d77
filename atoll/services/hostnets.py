"""The hosts' own networks, as their agents report them, and the check that keeps tenant CIDRs off them.

A tenant subnet that overlaps a network a host is on (its uplink's subnet, a route to a management
network, Docker's bridge) would shadow it: a router or an instance on that host would send traffic for
those addresses into the tenant network. Instances may be placed on any host and overlay networks span
them all, so a CIDR is refused if it overlaps a network of *any* host. Default routes are not
reported: they cover everything and say nothing about which addresses are in use. A subnet asked for
as ``auto`` gets a block of the default address pools that avoids them (``fill_auto``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from ipaddress import IPv4Network, ip_network
from typing import TypeVar

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput
from atoll.model.overlay import HostNetworkReport
from atoll.schemas import SubnetCreate, SubnetSpec
from atoll.services import addrpools
from atoll.services.context import Controller
from atoll.store.models import HostRow, SubnetRow
from atoll.store.overlaynet import HostCidrRow, HostUnderlayRow

S = TypeVar("S", SubnetSpec, SubnetCreate)


def record_report(ctl: Controller, host_id: str, report: HostNetworkReport) -> None:
    """Replace what is known of ``host_id``'s networks. Idempotent; unknown hosts are ignored."""
    with ctl.sessions.begin() as s:
        if s.get(HostRow, host_id) is None:
            return
        underlay = s.get(HostUnderlayRow, host_id)
        if underlay is None:
            s.add(HostUnderlayRow(host_id=host_id, address=report.underlay_ip, mtu=report.underlay_mtu))
        else:
            underlay.address, underlay.mtu = report.underlay_ip, report.underlay_mtu
        s.execute(delete(HostCidrRow).where(HostCidrRow.host_id == host_id))
        seen: set[tuple[str, str]] = set()
        for item in report.cidrs:
            key = (item.interface, str(ip_network(item.cidr, strict=False)))
            if key not in seen:
                seen.add(key)
                s.add(HostCidrRow(host_id=host_id, interface=key[0], cidr=key[1]))


def host_cidrs(s: Session) -> list[tuple[str, str, str]]:
    """(host name, interface, cidr) of every network any host reported."""
    rows = s.execute(
        select(HostRow.name, HostCidrRow.interface, HostCidrRow.cidr)
        .join(HostRow, HostRow.id == HostCidrRow.host_id)
        .order_by(HostRow.name, HostCidrRow.interface, HostCidrRow.cidr)
    )
    return [(name, interface, cidr) for name, interface, cidr in rows]


def check_free(s: Session, cidrs: Iterable[tuple[str, IPv4Network]]) -> None:
    """Refuse the first (field, cidr) that overlaps a host's own network, naming host and interface."""
    taken = [(name, interface, ip_network(cidr)) for name, interface, cidr in host_cidrs(s)]
    for field, cidr in cidrs:
        for name, interface, other in taken:
            if other.version == cidr.version and other.overlaps(cidr):
                raise InvalidInput(
                    f"{field}: {cidr} overlaps {other} of the host's interface {interface} on host {name}: "
                    "choose another range"
                )


def fill_auto(ctl: Controller, project: str, specs: list[S], fields: list[str]) -> list[S]:
    """Give each subnet asked for as ``auto`` the first free block of the default address pools: free
    of the hosts' own networks, the project's subnets and the other subnets of this request."""
    if not any(spec.cidr.strip() == addrpools.AUTO for spec in specs):
        return specs
    with ctl.sessions() as s:
        taken = [IPv4Network(cidr) for _, _, cidr in host_cidrs(s)]
        taken += [
            IPv4Network(c) for c in s.scalars(select(SubnetRow.cidr).where(SubnetRow.project == project))
        ]
    for spec in specs:
        with contextlib.suppress(ValueError):
            taken.append(IPv4Network(spec.cidr.strip(), strict=False))
    filled = []
    for spec, field in zip(specs, fields, strict=True):
        if spec.cidr.strip() == addrpools.AUTO:
            block = addrpools.pick(ctl.address_pools, taken)
            if block is None:
                ranges = ", ".join(f"{p.base}:{p.size}" for p in ctl.address_pools)
                raise Conflict(f"{field}: no free block left in the default address pools ({ranges})")
            taken.append(block)
            spec = spec.model_copy(update={"cidr": str(block)})
        filled.append(spec)
    return filled
