"""Networks and subnets: create, list, inspect, delete. Every one belongs to a project and is only ever
looked up within it, so one project can neither see nor name another's.

A network is pure desired state: hosts build its bridge when (and where) it gets a port. Everything is
validated before the one transaction that writes it, so a refused request leaves nothing behind.
Deleting a network or subnet that still has ports (addresses in use) is refused.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput, NotFound
from atoll.model.network import NetworkType
from atoll.schemas import Network, NetworkCreate, Subnet, SubnetCreate, SubnetSpec
from atoll.services import hostnets, ipam, overlay
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.external import check_external, resolve_external
from atoll.services.ids import is_hex, new_id
from atoll.services.netviews import network_view, subnet_plan, subnet_view
from atoll.services.projects import require_project
from atoll.services.routeruse import refuse_routed_network, refuse_routed_subnet
from atoll.store.models import IpAllocationRow, NetworkRow, PortRow, SubnetRow

R = TypeVar("R", NetworkRow, SubnetRow)
SUPPORTED_TYPES = (NetworkType.BRIDGE, NetworkType.OVERLAY, NetworkType.EXTERNAL)
MIN_PREFIX_REF = 4
"""Shortest id prefix that names a network or subnet, so a short name is not taken for an id."""


def check_type(text: str) -> NetworkType:
    try:
        kind = NetworkType(text)
    except ValueError:
        known = ", ".join(t.value for t in NetworkType)
        raise InvalidInput(f"type: unknown network type {text!r}; one of {known}") from None
    if kind not in SUPPORTED_TYPES:
        raise InvalidInput(f"type: {kind.value!r} networks are not supported yet: use 'external'")
    return kind


def _resolve(s: Session, model: type[R], project: str, ref: str, what: str) -> R:
    """A network or subnet of ``project``: by full id, by name, or by a unique id prefix."""
    row = s.get(model, ref)
    if row is not None and row.project == project:
        return row
    by_name = list(s.scalars(select(model).where(model.project == project, model.name == ref).limit(2)))
    if len(by_name) > 1:
        raise Conflict(f"{what} name {ref!r} is ambiguous: use the id")
    if by_name:
        return by_name[0]
    if len(ref) >= MIN_PREFIX_REF and is_hex(ref):
        rows = list(
            s.scalars(select(model).where(model.project == project, model.id.startswith(ref)).limit(2))
        )
        if len(rows) > 1:
            raise Conflict(f"{what} id prefix {ref!r} is ambiguous")
        if rows:
            return rows[0]
    raise NotFound(f"{what} {ref!r} not found")


def resolve_network(s: Session, project: str, ref: str) -> NetworkRow:
    return _resolve(s, NetworkRow, project, ref, "network")


def resolve_subnet(s: Session, project: str, ref: str) -> SubnetRow:
    return _resolve(s, SubnetRow, project, ref, "subnet")


def network_subnets(s: Session, network_id: str) -> list[SubnetRow]:
    """A network's subnets, oldest first; those made together (with the network) by address."""
    rows = s.scalars(select(SubnetRow).where(SubnetRow.network_id == network_id))
    return sorted(rows, key=_subnet_order)


def _subnet_order(row: SubnetRow) -> tuple[str, int]:
    return row.created_at, int(IPv4Network(row.cidr).network_address)


def _plan(spec: SubnetSpec, field: str) -> ipam.SubnetPlan:
    pools = None
    if spec.allocation_pools is not None:
        pools = [(p.start, p.end) for p in spec.allocation_pools]
    return ipam.plan_subnet(
        spec.cidr,
        gateway=spec.gateway,
        no_gateway=spec.no_gateway,
        pools=pools,
        dns=spec.dns_nameservers,
        field=field,
    )


def _subnet_row(
    project: str, network_id: str, spec: SubnetSpec, plan: ipam.SubnetPlan, created_at: str
) -> SubnetRow:
    return SubnetRow(
        id=new_id(),
        project=project,
        network_id=network_id,
        name=spec.name or str(plan.cidr).replace("/", "_"),
        cidr=str(plan.cidr),
        ip_version=4,
        gateway=str(plan.gateway) if plan.gateway is not None else "",
        allocation_pools=[[str(p.start), str(p.end)] for p in plan.pools],
        dns_nameservers=[str(d) for d in plan.dns],
        created_at=created_at,
    )


def create_network(ctl: Controller, *, project: str, request: NetworkCreate) -> Network:
    kind = check_type(request.type)
    fields = [f"subnets[{i}].cidr" for i in range(len(request.subnets))]
    request = request.model_copy(
        update={"subnets": hostnets.fill_auto(ctl, project, list(request.subnets), fields)}
    )
    plans = [_plan(spec, f"subnets[{i}]") for i, spec in enumerate(request.subnets)]
    for j, plan in enumerate(plans):
        for i in range(j):
            if plans[i].cidr.overlaps(plan.cidr):
                raise InvalidInput(f"subnets[{j}].cidr: {plan.cidr} overlaps subnets[{i}] ({plans[i].cidr})")
    now = now_iso()
    if kind != NetworkType.EXTERNAL and request.uplink:
        raise InvalidInput("uplink: only external networks have an uplink")
    with ctl.sessions.begin() as s:
        require_project(s, project)
        if kind != NetworkType.EXTERNAL:  # an external network may well be a network the host is on
            hostnets.check_free(s, ((f"subnets[{i}].cidr", plan.cidr) for i, plan in enumerate(plans)))
        uplink = check_external(s, project=project, request=request) if kind == NetworkType.EXTERNAL else ""
        taken = s.scalar(
            select(NetworkRow.id).where(NetworkRow.project == project, NetworkRow.name == request.name)
        )
        if taken is not None:
            raise Conflict(f"name: network {request.name!r} already exists (id {taken[:12]})")
        row = NetworkRow(
            id=new_id(),
            project=project,
            name=request.name,
            type=kind.value,
            mtu=overlay.network_mtu(s, kind, request.mtu),
            labels=dict(request.labels),
            created_at=now,
            uplink=uplink,
        )
        s.add(row)
        try:
            s.flush()
        except IntegrityError as e:
            raise Conflict(f"name: network {request.name!r} already exists") from e
        if kind == NetworkType.OVERLAY:
            overlay.allocate_vni(s, row.id)
        subnets = [
            _subnet_row(project, row.id, spec, plan, now)
            for spec, plan in zip(request.subnets, plans, strict=True)
        ]
        s.add_all(subnets)
        view = network_view(row, subnets)
    ctl.activity.record("network", "create", view.id, project, name=view.name, type=view.type)
    return view


def list_networks(ctl: Controller, *, project: str) -> list[Network]:
    with ctl.sessions() as s:
        require_project(s, project)
        mine_or_shared = or_(NetworkRow.project == project, NetworkRow.type == NetworkType.EXTERNAL.value)
        rows = list(s.scalars(select(NetworkRow).where(mine_or_shared).order_by(NetworkRow.name)))
        return [network_view(r, network_subnets(s, r.id)) for r in rows]


def has_network(ctl: Controller, *, project: str, ref: str) -> bool:
    """Whether ``project`` has a network ``ref`` of its own: a lookup without building its view."""
    with ctl.sessions() as s:
        try:
            resolve_network(s, project, ref)
        except NotFound:
            return False
        return True


def get_network(ctl: Controller, *, project: str, ref: str) -> Network:
    """A network of ``project``, or a (shared) external network of the administrator's."""
    with ctl.sessions() as s:
        require_project(s, project)
        try:
            row = resolve_network(s, project, ref)
        except NotFound as missing:
            try:
                row = resolve_external(s, project, ref, "network")
            except NotFound:
                raise missing from None
        return network_view(row, network_subnets(s, row.id))


def _users(s: Session, network_id: str) -> list[str]:
    """Who holds ports on a network: instance ids (or port ids of unbound ports)."""
    rows = s.execute(select(PortRow.id, PortRow.instance_id).where(PortRow.network_id == network_id).limit(5))
    return [(instance or port)[:12] for port, instance in rows]


def remove_network(ctl: Controller, *, project: str, ref: str) -> None:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve_network(s, project, ref)
        refuse_routed_network(s, row)
        users = _users(s, row.id)
        if users:
            raise Conflict(
                f"network {row.name} is in use by instance(s) {', '.join(users)}: remove them first"
            )
        gone = (row.id, row.name, row.type)
        s.delete(row)  # its subnets go with it (ON DELETE CASCADE)
    ctl.activity.record("network", "destroy", gone[0], project, name=gone[1], type=gone[2])


def create_subnet(ctl: Controller, *, project: str, request: SubnetCreate) -> Subnet:
    (request,) = hostnets.fill_auto(ctl, project, [request], ["cidr"])
    plan = _plan(request, "")
    with ctl.sessions.begin() as s:
        require_project(s, project)
        try:
            network = resolve_network(s, project, request.network)
        except NotFound as e:
            raise InvalidInput(f"network: {e.message}") from e
        for other in network_subnets(s, network.id):
            if subnet_plan(other).cidr.overlaps(plan.cidr):
                raise InvalidInput(
                    f"cidr: {plan.cidr} overlaps subnet {other.name} ({other.cidr}) of network {network.name}"
                )
        if network.type != NetworkType.EXTERNAL.value:
            hostnets.check_free(s, [("cidr", plan.cidr)])
        row = _subnet_row(project, network.id, request, plan, now_iso())
        s.add(row)
        return subnet_view(row)


def list_subnets(ctl: Controller, *, project: str, network: str | None = None) -> list[Subnet]:
    with ctl.sessions() as s:
        require_project(s, project)
        query = select(SubnetRow).where(SubnetRow.project == project)
        if network:
            query = query.where(SubnetRow.network_id == resolve_network(s, project, network).id)
        return [subnet_view(r) for r in sorted(s.scalars(query), key=_subnet_order)]


def get_subnet(ctl: Controller, *, project: str, ref: str) -> Subnet:
    with ctl.sessions() as s:
        require_project(s, project)
        return subnet_view(resolve_subnet(s, project, ref))


def remove_subnet(ctl: Controller, *, project: str, ref: str) -> None:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve_subnet(s, project, ref)
        refuse_routed_subnet(s, row)
        used = s.scalar(
            select(func.count()).select_from(IpAllocationRow).where(IpAllocationRow.subnet_id == row.id)
        )
        if used:
            raise Conflict(f"subnet {row.name} has {used} address(es) in use: remove the instances first")
        s.delete(row)
