"""What routers and floating IPs hold on networks and subnets, for the refusals of other services:
a network or subnet that a router or a floating IP uses cannot be deleted, and instances never get a
port of their own on an external network. Depends only on the store, so ``networks`` and ``netports``
can ask it without a cycle."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput
from atoll.model.network import NetworkType
from atoll.store.models import IpAllocationRow, NetworkRow, PortRow, SubnetRow
from atoll.store.routing import FloatingIpRow, RouterInterfaceRow, RouterRow


def _router_names(s: Session, router_ids: list[str]) -> str:
    rows = s.scalars(select(RouterRow).where(RouterRow.id.in_(router_ids)))
    return ", ".join(sorted(f"{r.name} (project {r.project})" for r in rows))


def refuse_routed_network(s: Session, network: NetworkRow) -> None:
    """409 while a router has a leg on ``network`` or floating IPs come from it."""
    joined = list(
        s.scalars(
            select(RouterInterfaceRow.router_id)
            .join(PortRow, PortRow.id == RouterInterfaceRow.port_id)
            .where(PortRow.network_id == network.id)
        )
    )
    if joined:
        raise Conflict(
            f"network {network.name} is joined to router(s) {_router_names(s, joined)}: "
            "remove the router interface first"
        )
    gateways = list(
        s.scalars(
            select(RouterRow.id)
            .join(PortRow, PortRow.id == RouterRow.gateway_port_id)
            .where(PortRow.network_id == network.id)
        )
    )
    if gateways:
        raise Conflict(
            f"network {network.name} is the external gateway of router(s) {_router_names(s, gateways)}: "
            "clear the gateway first"
        )
    fips = list(s.scalars(select(FloatingIpRow.address).where(FloatingIpRow.network_id == network.id)))
    if fips:
        raise Conflict(
            f"network {network.name} has floating IP(s) {', '.join(sorted(fips))}: remove them first"
        )


def refuse_routed_subnet(s: Session, subnet: SubnetRow) -> None:
    """409 while a router's interface is on ``subnet``, or a gateway or floating IP holds an address of it."""
    joined = list(
        s.scalars(select(RouterInterfaceRow.router_id).where(RouterInterfaceRow.subnet_id == subnet.id))
    )
    if joined:
        raise Conflict(
            f"subnet {subnet.name} is joined to router(s) {_router_names(s, joined)}: "
            "remove the router interface first"
        )
    held = list(
        s.scalars(
            select(PortRow.device)
            .join(IpAllocationRow, IpAllocationRow.port_id == PortRow.id)
            .where(IpAllocationRow.subnet_id == subnet.id, PortRow.instance_id.is_(None))
        )
    )
    if held:
        raise Conflict(
            f"subnet {subnet.name} holds addresses of router gateways or floating IPs: "
            "clear the gateways and remove the floating IPs first"
        )


def refuse_external(network: NetworkRow, field: str) -> None:
    """Instances reach an external network through a router (SNAT) or a floating IP, never directly:
    a port of theirs on it would share a segment with every project's routers."""
    if network.type == NetworkType.EXTERNAL:
        raise InvalidInput(
            f"{field}: {network.name} is an external network: join its subnet to a router with a gateway "
            "on it, or give the instance a floating IP"
        )
