"""Floating IPs: an address of an external network, owned by a project and mapped 1:1 to one of its
instance ports (DNAT in, SNAT out, in the namespace of the router that joins the port's subnet and has
its gateway on that external network).

Association checks, in the caller's project only, that the port exists (another project's port is
"not found") and that such a router exists. Associating again moves the address to the new port;
removing the instance disassociates it (``ON DELETE SET NULL``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput, NotFound
from atoll.schemas_routing import FloatingIp, FloatingIpAssociate, FloatingIpCreate
from atoll.services import ipam
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.external import resolve_external
from atoll.services.ids import is_hex, new_id
from atoll.services.netports import used_addresses
from atoll.services.netviews import subnet_plan
from atoll.services.networks import network_subnets
from atoll.services.projects import require_project
from atoll.services.routers import add_leg_port, free_address
from atoll.services.routerviews import carrier, fip_view
from atoll.store.models import InstanceRow, NetworkRow, PortRow
from atoll.store.routing import FloatingIpRow

MIN_PREFIX_REF = 4


def resolve_fip(s: Session, project: str, ref: str) -> FloatingIpRow:
    """By id, by address, or by a unique id prefix."""
    row = s.get(FloatingIpRow, ref)
    if row is not None and row.project == project:
        return row
    mine = select(FloatingIpRow).where(FloatingIpRow.project == project)
    row = s.scalar(mine.where(FloatingIpRow.address == ref).limit(1))
    if row is not None:
        return row
    if len(ref) >= MIN_PREFIX_REF and is_hex(ref):
        rows = list(s.scalars(mine.where(FloatingIpRow.id.startswith(ref)).limit(2)))
        if len(rows) > 1:
            raise Conflict(f"floating IP id prefix {ref!r} is ambiguous")
        if rows:
            return rows[0]
    raise NotFound(f"floating IP {ref!r} not found")


def _candidate_ports(s: Session, project: str, ref: str) -> list[PortRow]:
    """A port by id (or unique prefix), or the ports of an instance by name or id, in ``project``."""
    port = s.get(PortRow, ref)
    if port is not None and port.project == project and port.instance_id:
        return [port]
    instance = s.get(InstanceRow, ref)
    if instance is None or instance.project != project:
        instance = s.scalar(
            select(InstanceRow).where(InstanceRow.project == project, InstanceRow.name == ref)
        )
    if instance is not None:
        return list(
            s.scalars(select(PortRow).where(PortRow.instance_id == instance.id).order_by(PortRow.device))
        )
    if len(ref) >= MIN_PREFIX_REF and is_hex(ref):
        query = select(PortRow).where(
            PortRow.project == project, PortRow.instance_id.is_not(None), PortRow.id.startswith(ref)
        )
        rows = list(s.scalars(query.limit(2)))
        if len(rows) > 1:
            raise Conflict(f"port: id prefix {ref!r} is ambiguous")
        if rows:
            return rows
    raise NotFound(f"port: port or instance {ref!r} not found")


def _associate(s: Session, fip: FloatingIpRow, ref: str) -> None:
    ports = _candidate_ports(s, fip.project, ref)
    network = s.get(NetworkRow, fip.network_id)
    assert network is not None
    for port in ports:
        if carrier(s, port.id, fip.network_id) is not None:
            holder = s.scalar(
                select(FloatingIpRow.address).where(
                    FloatingIpRow.fixed_port_id == port.id, FloatingIpRow.id != fip.id
                )
            )
            if holder is not None:
                raise Conflict(f"port: port {port.id[:12]} already has floating IP {holder}")
            fip.fixed_port_id = port.id
            return
    raise InvalidInput(
        f"port: no router joins the subnet of {ref} and has its gateway on network {network.name}; "
        f"add the subnet to a router whose external gateway is {network.name}"
    )


def create_fip(ctl: Controller, *, project: str, request: FloatingIpCreate) -> FloatingIp:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        network = resolve_external(s, project, request.network, "network")
        if request.ip is None:
            subnet, address = free_address(s, network, "network")
        else:
            address = ipam.parse_address(request.ip, "ip")
            subnets = [sn for sn in network_subnets(s, network.id) if address in subnet_plan(sn).cidr]
            if not subnets:
                raise InvalidInput(f"ip: {address} is not in a subnet of network {network.name}")
            subnet = subnets[0]
            ipam.check_fixed(subnet_plan(subnet), address, "ip")
            if address in used_addresses(s, subnet.id):
                raise Conflict(f"ip: {address} is already in use on network {network.name}")
        port = add_leg_port(
            s,
            project=project,
            network_id=network.id,
            subnet_id=subnet.id,
            address=str(address),
            device_prefix="fip-",
        )
        row = FloatingIpRow(
            id=new_id(),
            project=project,
            network_id=network.id,
            port_id=port.id,
            address=str(address),
            created_at=now_iso(),
        )
        s.add(row)
        s.flush()
        if request.port:
            _associate(s, row, request.port)
        return fip_view(s, row)


def list_fips(ctl: Controller, *, project: str) -> list[FloatingIp]:
    with ctl.sessions() as s:
        require_project(s, project)
        rows = s.scalars(
            select(FloatingIpRow).where(FloatingIpRow.project == project).order_by(FloatingIpRow.address)
        )
        return [fip_view(s, r) for r in rows]


def get_fip(ctl: Controller, *, project: str, ref: str) -> FloatingIp:
    with ctl.sessions() as s:
        require_project(s, project)
        return fip_view(s, resolve_fip(s, project, ref))


def associate_fip(ctl: Controller, *, project: str, ref: str, request: FloatingIpAssociate) -> FloatingIp:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve_fip(s, project, ref)
        _associate(s, row, request.port)
        return fip_view(s, row)


def disassociate_fip(ctl: Controller, *, project: str, ref: str) -> FloatingIp:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve_fip(s, project, ref)
        row.fixed_port_id = None
        return fip_view(s, row)


def remove_fip(ctl: Controller, *, project: str, ref: str) -> None:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve_fip(s, project, ref)
        port = s.get(PortRow, row.port_id)
        s.delete(row)
        s.flush()
        if port is not None:
            s.delete(port)
