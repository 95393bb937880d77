"""Routers and floating IPs as the API shows them, and as hosts receive them (``RouterSpec``).

Which router carries a floating IP is not stored: it is the router with an interface on the subnet of
the associated port's address and its gateway on the floating IP's network. Association checks that
one exists, and removing that interface or gateway is refused while it is needed.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.model.routing import FloatingMapping, RouterGateway, RouterLeg, RouterSpec, StaticRoute
from atoll.schemas_routing import FloatingIp, Router, RouterInterface, StaticRouteWire
from atoll.schemas_routing import RouterGateway as RouterGatewayWire
from atoll.store.models import IpAllocationRow, NetworkRow, PortRow, SubnetRow
from atoll.store.routing import FloatingIpRow, RouterInterfaceRow, RouterRow


def allocation(s: Session, port_id: str) -> IpAllocationRow | None:
    return s.scalar(select(IpAllocationRow).where(IpAllocationRow.port_id == port_id).limit(1))


def interfaces(s: Session, router_id: str) -> list[tuple[RouterInterfaceRow, PortRow, SubnetRow]]:
    rows = s.execute(
        select(RouterInterfaceRow, PortRow, SubnetRow)
        .join(PortRow, PortRow.id == RouterInterfaceRow.port_id)
        .join(SubnetRow, SubnetRow.id == RouterInterfaceRow.subnet_id)
        .where(RouterInterfaceRow.router_id == router_id)
        .order_by(SubnetRow.cidr)
    )
    return [(i, p, sn) for i, p, sn in rows]


def gateway(s: Session, router: RouterRow) -> tuple[PortRow, IpAllocationRow, SubnetRow] | None:
    if router.gateway_port_id is None:
        return None
    port = s.get(PortRow, router.gateway_port_id)
    alloc = allocation(s, router.gateway_port_id)
    if port is None or alloc is None:
        return None
    subnet = s.get(SubnetRow, alloc.subnet_id)
    assert subnet is not None
    return port, alloc, subnet


def connected(s: Session, router: RouterRow) -> list[IPv4Network]:
    """The subnets the router is on (interfaces and gateway)."""
    cidrs = [IPv4Network(sn.cidr) for _, _, sn in interfaces(s, router.id)]
    gw = gateway(s, router)
    return [*cidrs, *([IPv4Network(gw[2].cidr)] if gw else [])]


def carrier(s: Session, fixed_port_id: str, external_network_id: str) -> RouterRow | None:
    """The router that carries a floating IP of ``external_network_id`` for this port, if any."""
    alloc = allocation(s, fixed_port_id)
    if alloc is None:
        return None
    query = (
        select(RouterRow)
        .join(RouterInterfaceRow, RouterInterfaceRow.router_id == RouterRow.id)
        .join(PortRow, PortRow.id == RouterRow.gateway_port_id)
        .where(RouterInterfaceRow.subnet_id == alloc.subnet_id, PortRow.network_id == external_network_id)
    )
    return s.scalar(query.limit(1))


def router_view(s: Session, row: RouterRow) -> Router:
    gw = gateway(s, row)
    return Router(
        id=row.id,
        name=row.name,
        project=row.project,
        interfaces=[
            RouterInterface(subnet=sn.id, network=p.network_id, port=p.id, ip=sn.gateway)
            for _, p, sn in interfaces(s, row.id)
        ],
        external_gateway=(
            RouterGatewayWire(network=gw[0].network_id, port=gw[0].id, ip=gw[1].address, snat=row.snat)
            if gw
            else None
        ),
        routes=[StaticRouteWire(destination=d, nexthop=n) for d, n in row.routes],
        created_at=row.created_at,
        host=row.host_id,
    )


def fip_view(s: Session, row: FloatingIpRow) -> FloatingIp:
    fixed = s.get(PortRow, row.fixed_port_id) if row.fixed_port_id else None
    alloc = allocation(s, fixed.id) if fixed is not None else None
    router = carrier(s, fixed.id, row.network_id) if fixed is not None else None
    return FloatingIp(
        id=row.id,
        project=row.project,
        network=row.network_id,
        ip=row.address,
        port=fixed.id if fixed is not None else None,
        fixed_ip=alloc.address if alloc is not None else None,
        instance=fixed.instance_id if fixed is not None else None,
        router=router.id if router is not None else None,
        created_at=row.created_at,
    )


def _leg(port: PortRow, address: str, subnet: SubnetRow, network: NetworkRow) -> RouterLeg:
    return RouterLeg(
        port_id=port.id,
        network_id=port.network_id,
        mac=port.mac,
        ip=address,
        prefix_len=IPv4Network(subnet.cidr).prefixlen,
        mtu=network.mtu,
        uplink=network.uplink,
    )


def router_spec(s: Session, row: RouterRow) -> RouterSpec:
    legs = []
    for _, port, subnet in interfaces(s, row.id):
        network = s.get(NetworkRow, port.network_id)
        assert network is not None
        legs.append(_leg(port, subnet.gateway, subnet, network))
    gw = gateway(s, row)
    spec_gw = None
    if gw is not None:
        port, alloc, subnet = gw
        network = s.get(NetworkRow, port.network_id)
        assert network is not None
        floating = []
        fips = s.scalars(
            select(FloatingIpRow)
            .where(FloatingIpRow.network_id == network.id, FloatingIpRow.fixed_port_id.is_not(None))
            .order_by(FloatingIpRow.address)
        )
        for fip in fips:
            assert fip.fixed_port_id is not None
            carried = carrier(s, fip.fixed_port_id, network.id)
            fixed = allocation(s, fip.fixed_port_id)
            if carried is not None and carried.id == row.id and fixed is not None:
                floating.append(FloatingMapping(floating_ip=fip.address, fixed_ip=fixed.address))
        spec_gw = RouterGateway(
            leg=_leg(port, alloc.address, subnet, network),
            nexthop=subnet.gateway,
            snat=row.snat,
            floating=floating,
        )
    return RouterSpec(
        id=row.id,
        interfaces=legs,
        gateway=spec_gw,
        routes=[StaticRoute(destination=d, nexthop=n) for d, n in row.routes],
    )


def all_router_specs(s: Session) -> list[RouterSpec]:
    return [router_spec(s, row) for row in s.scalars(select(RouterRow).order_by(RouterRow.id))]
