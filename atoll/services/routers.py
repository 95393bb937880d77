"""Routers: create, list, inspect, update (external gateway, SNAT, static routes), delete, and the
interfaces that join them to subnets. Each router belongs to a project and joins only that project's
subnets; its gateway may be on any external network (they are shared, see ``external``).

Every change is validated before the one transaction that writes it. Hosts are told afterwards (see
``routernudge``), so the router's namespace changes before the API answers.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput, NotFound
from atoll.model.network import NetworkType
from atoll.schemas_routing import Router, RouterCreate, RouterInterfaceRequest, RouterUpdate, StaticRouteWire
from atoll.services import ipam, routerhosts
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.external import resolve_external
from atoll.services.ids import is_hex, new_id
from atoll.services.netports import random_mac, used_addresses
from atoll.services.netviews import subnet_plan
from atoll.services.networks import network_subnets, resolve_subnet
from atoll.services.projects import require_project
from atoll.services.routerviews import connected, gateway, interfaces, router_view
from atoll.store.models import IpAllocationRow, NetworkRow, PortRow, SubnetRow
from atoll.store.routing import FloatingIpRow, RouterInterfaceRow, RouterRow

MIN_PREFIX_REF = 4


def resolve_router(s: Session, project: str, ref: str) -> RouterRow:
    row = s.get(RouterRow, ref)
    if row is not None and row.project == project:
        return row
    row = s.scalar(select(RouterRow).where(RouterRow.project == project, RouterRow.name == ref))
    if row is not None:
        return row
    if len(ref) >= MIN_PREFIX_REF and is_hex(ref):
        rows = list(
            s.scalars(
                select(RouterRow).where(RouterRow.project == project, RouterRow.id.startswith(ref)).limit(2)
            )
        )
        if len(rows) > 1:
            raise Conflict(f"router id prefix {ref!r} is ambiguous")
        if rows:
            return rows[0]
    raise NotFound(f"router {ref!r} not found")


def add_leg_port(
    s: Session, *, project: str, network_id: str, subnet_id: str, address: str, device_prefix: str
) -> PortRow:
    """A port with no instance that holds ``address`` (a router leg or a floating IP)."""
    port_id = new_id()
    port = PortRow(
        id=port_id,
        project=project,
        network_id=network_id,
        instance_id=None,
        device=f"{device_prefix}{port_id[:8]}",
        mac=random_mac(),
        aliases=[],
        created_at=now_iso(),
    )
    s.add(port)
    try:
        s.flush()
        s.add(IpAllocationRow(subnet_id=subnet_id, address=address, port_id=port.id))
        s.flush()
    except IntegrityError as e:
        raise Conflict(f"{address} was taken meanwhile; try again") from e
    return port


def free_address(s: Session, network: NetworkRow, field: str) -> tuple[SubnetRow, IPv4Address]:
    for subnet in network_subnets(s, network.id):
        free = ipam.first_free(subnet_plan(subnet), used_addresses(s, subnet.id))
        if free is not None:
            return subnet, free
    raise Conflict(f"{field}: no free address left on network {network.name}")


def _check_routes(routes: list[StaticRouteWire], cidrs: list[IPv4Network], own: set[str]) -> list[list[str]]:
    out = []
    for i, route in enumerate(routes):
        field = f"routes[{i}]"
        try:
            dest = IPv4Network(route.destination.strip(), strict=True)
        except ValueError:
            raise InvalidInput(
                f"{field}.destination: {route.destination!r} is not an IPv4 CIDR without host bits"
            ) from None
        if dest.prefixlen == 0:
            raise InvalidInput(f"{field}.destination: the default route goes through the external gateway")
        nexthop = ipam.parse_address(route.nexthop, f"{field}.nexthop")
        if str(nexthop) in own or not any(nexthop in c for c in cidrs):
            on = ", ".join(str(c) for c in cidrs) or "none yet"
            raise InvalidInput(
                f"{field}.nexthop: {nexthop} is not a neighbour on the router's subnets ({on})"
            )
        out.append([str(dest), str(nexthop)])
    return out


def _own_addresses(s: Session, router: RouterRow) -> set[str]:
    addrs = {sn.gateway for _, _, sn in interfaces(s, router.id)}
    gw = gateway(s, router)
    return addrs | ({gw[1].address} if gw else set())


def _fips_through(s: Session, router: RouterRow, subnet_id: str | None = None) -> list[str]:
    """Floating IPs (addresses) whose traffic this router carries; only those via ``subnet_id`` if given."""
    gw = gateway(s, router)
    if gw is None:
        return []
    subnets = [sn.id for _, _, sn in interfaces(s, router.id)] if subnet_id is None else [subnet_id]
    rows = s.scalars(
        select(FloatingIpRow.address)
        .join(IpAllocationRow, IpAllocationRow.port_id == FloatingIpRow.fixed_port_id)
        .where(FloatingIpRow.network_id == gw[0].network_id, IpAllocationRow.subnet_id.in_(subnets))
    )
    return sorted(rows)


def _clear_gateway(s: Session, router: RouterRow) -> None:
    fips = _fips_through(s, router)
    if fips:
        raise Conflict(
            f"external_gateway: router {router.name} carries floating IP(s) {', '.join(fips)}: "
            "disassociate them first"
        )
    port_id = router.gateway_port_id
    router.gateway_port_id = None
    s.flush()
    if port_id is not None:
        port = s.get(PortRow, port_id)
        if port is not None:
            s.delete(port)  # its address goes with it
            s.flush()


def _set_gateway(s: Session, router: RouterRow, ref: str) -> None:
    network = resolve_external(s, router.project, ref, "external_gateway")
    current = gateway(s, router)
    if current is not None and current[0].network_id == network.id:
        return
    subnet, address = free_address(s, network, "external_gateway")
    inner = [IPv4Network(sn.cidr) for _, _, sn in interfaces(s, router.id)]
    for cidr in inner:
        for ext in network_subnets(s, network.id):
            if cidr.overlaps(IPv4Network(ext.cidr)):
                raise InvalidInput(
                    f"external_gateway: {ext.cidr} of {network.name} overlaps {cidr}, "
                    f"a subnet of router {router.name}"
                )
    if current is not None:
        _clear_gateway(s, router)
    port = add_leg_port(
        s,
        project=router.project,
        network_id=network.id,
        subnet_id=subnet.id,
        address=str(address),
        device_prefix="qg-",
    )
    router.gateway_port_id = port.id


def create_router(ctl: Controller, *, project: str, request: RouterCreate) -> Router:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        if s.scalar(select(RouterRow.id).where(RouterRow.project == project, RouterRow.name == request.name)):
            raise Conflict(f"name: router {request.name!r} already exists")
        row = RouterRow(
            id=new_id(),
            project=project,
            name=request.name,
            snat=request.snat,
            routes=[],
            created_at=now_iso(),
        )
        s.add(row)
        s.flush()
        if request.external_gateway:
            _set_gateway(s, row, request.external_gateway)
        routerhosts.bind(s, row)
        if request.routes:
            row.routes = _check_routes(request.routes, connected(s, row), _own_addresses(s, row))
        return router_view(s, row)


def list_routers(ctl: Controller, *, project: str) -> list[Router]:
    with ctl.sessions() as s:
        require_project(s, project)
        rows = s.scalars(select(RouterRow).where(RouterRow.project == project).order_by(RouterRow.name))
        return [router_view(s, r) for r in rows]


def get_router(ctl: Controller, *, project: str, ref: str) -> Router:
    with ctl.sessions() as s:
        require_project(s, project)
        return router_view(s, resolve_router(s, project, ref))


def update_router(ctl: Controller, *, project: str, ref: str, request: RouterUpdate) -> Router:
    given = request.model_fields_set
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve_router(s, project, ref)
        if "external_gateway" in given:
            if request.external_gateway:
                _set_gateway(s, row, request.external_gateway)
            else:
                _clear_gateway(s, row)
        if request.snat is not None:
            row.snat = request.snat
        routes = (
            request.routes
            if request.routes is not None
            else [StaticRouteWire(destination=d, nexthop=n) for d, n in row.routes]
        )
        row.routes = _check_routes(routes, connected(s, row), _own_addresses(s, row))
        return router_view(s, row)


def remove_router(ctl: Controller, *, project: str, ref: str) -> None:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve_router(s, project, ref)
        joined = interfaces(s, row.id)
        if joined:
            cidrs = ", ".join(sn.cidr for _, _, sn in joined)
            raise Conflict(f"router {row.name} has interfaces on {cidrs}: remove them first")
        _clear_gateway(s, row)
        s.delete(row)


def add_interface(ctl: Controller, *, project: str, ref: str, request: RouterInterfaceRequest) -> Router:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve_router(s, project, ref)
        try:
            subnet = resolve_subnet(s, project, request.subnet)
        except NotFound as e:
            raise NotFound(f"subnet: {e.message}") from e
        network = s.get(NetworkRow, subnet.network_id)
        assert network is not None
        if network.type == NetworkType.EXTERNAL:
            raise InvalidInput(
                f"subnet: {subnet.cidr} is on {network.type} network {network.name}; use the gateway"
            )
        if not subnet.gateway:
            raise InvalidInput(
                f"subnet: {subnet.name} ({subnet.cidr}) has no gateway address for the router to hold"
            )
        taken = s.scalar(
            select(RouterInterfaceRow.router_id).where(RouterInterfaceRow.subnet_id == subnet.id)
        )
        if taken is not None:
            other = s.get(RouterRow, taken)
            raise Conflict(
                f"subnet: {subnet.name} is already joined to router {other.name if other else taken}"
            )
        new = IPv4Network(subnet.cidr)
        for cidr in connected(s, row):
            if new.overlaps(cidr):
                raise InvalidInput(f"subnet: {subnet.cidr} overlaps {cidr}, already on router {row.name}")
        port = add_leg_port(
            s,
            project=project,
            network_id=network.id,
            subnet_id=subnet.id,
            address=subnet.gateway,
            device_prefix="qr-",
        )
        s.add(RouterInterfaceRow(port_id=port.id, router_id=row.id, subnet_id=subnet.id))
        s.flush()
        return router_view(s, row)


def remove_interface(ctl: Controller, *, project: str, ref: str, subnet_ref: str) -> Router:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve_router(s, project, ref)
        subnet = resolve_subnet(s, project, subnet_ref)
        found = [(i, p) for i, p, sn in interfaces(s, row.id) if sn.id == subnet.id]
        if not found:
            raise NotFound(f"router {row.name} has no interface on subnet {subnet.name}")
        fips = _fips_through(s, row, subnet.id)
        if fips:
            raise Conflict(
                f"subnet: floating IP(s) {', '.join(fips)} reach {subnet.cidr} through router {row.name}: "
                "disassociate them first"
            )
        cidr = IPv4Network(subnet.cidr)
        using = [d for d, n in row.routes if IPv4Address(n) in cidr]
        if using:
            raise Conflict(
                f"subnet: static route(s) {', '.join(using)} go through {subnet.cidr}: remove them first"
            )
        _, port = found[0]
        s.delete(port)  # the interface row and the address go with it
        s.flush()
        return router_view(s, row)
