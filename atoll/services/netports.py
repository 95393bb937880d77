"""Ports: the NICs of instances, with their addresses and MACs.

``attach`` runs inside the transaction that creates the instance, so an instance and its ports (and
their addresses) appear together or not at all; they also go together, since ports are deleted with
their instance row (``ON DELETE CASCADE``), which frees the addresses.

Addresses come from ``ipam`` (pure) applied to the addresses in use at that moment. Within one
controller process no two transactions interleave (they run on the event loop), so two requests never
pick the same address. Across processes the primary key (subnet, address) of ``ip_allocations`` still
refuses the second one; ``attach`` turns that into ``AllocationRace`` and the caller runs its whole
transaction again, which then sees the address as used.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from ipaddress import IPv4Address

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput, NotFound
from atoll.model.network import PortSpec
from atoll.schemas import InstanceNetwork, Port
from atoll.services import ipam
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.ids import is_hex, new_id
from atoll.services.netviews import port_view, subnet_plan
from atoll.services.networks import network_subnets, resolve_network
from atoll.services.projects import require_project
from atoll.services.routeruse import refuse_external
from atoll.services.secgroup_ports import port_groups
from atoll.store.models import InstanceRow, IpAllocationRow, NetworkRow, PortRow, SubnetRow

MAC_PREFIX = "02:a7"
"""Locally administered, unicast; the rest is random. Unique per network (a constraint enforces it)."""
MAX_NICS = 8
MIN_PREFIX = 4


class AllocationRace(Exception):
    """Another transaction took an address or MAC this one picked; run the transaction again."""


def random_mac() -> str:
    return ":".join([MAC_PREFIX, *(f"{b:02x}" for b in secrets.token_bytes(4))])


def used_addresses(s: Session, subnet_id: str) -> set[IPv4Address]:
    query = select(IpAllocationRow.address).where(IpAllocationRow.subnet_id == subnet_id)
    return {IPv4Address(a) for a in s.scalars(query)}


def _holder(s: Session, subnet_id: str, address: IPv4Address) -> str:
    alloc = s.get(IpAllocationRow, (subnet_id, str(address)))
    port = s.get(PortRow, alloc.port_id) if alloc is not None else None
    if port is not None and port.instance_id:
        return f" by instance {port.instance_id[:12]}"
    return ""


def _key(field: str, name: str) -> str:
    """``networks[1].ip`` for one of a create's networks, plain ``ip`` for a connect (``field`` "")."""
    return f"{field}.{name}" if field else name


def _chosen_mac(s: Session, network: NetworkRow, requested: str, field: str) -> str:
    mac = requested.lower()
    if int(mac[:2], 16) & 1:
        raise InvalidInput(f"{_key(field, 'mac')}: {mac} is a multicast address; a NIC needs a unicast one")
    if mac == "00:00:00:00:00:00":
        raise InvalidInput(f"{_key(field, 'mac')}: {mac} is not a usable address")
    holder = s.scalar(select(PortRow).where(PortRow.network_id == network.id, PortRow.mac == mac))
    if holder is not None:
        who = f" by instance {holder.instance_id[:12]}" if holder.instance_id else ""
        raise InvalidInput(f"{_key(field, 'mac')}: {mac} is already in use{who} on network {network.name}")
    return mac


def _pick(
    s: Session, network: NetworkRow, subnets: list[SubnetRow], requested: str | None, field: str
) -> tuple[SubnetRow, ipam.SubnetPlan, IPv4Address]:
    if requested is not None:
        address = ipam.parse_address(requested, _key(field, "ip"))
        for subnet in subnets:
            plan = subnet_plan(subnet)
            if address in plan.cidr:
                ipam.check_fixed(plan, address, _key(field, "ip"))
                if address in used_addresses(s, subnet.id):
                    raise InvalidInput(
                        f"{_key(field, 'ip')}: {address} is already in use{_holder(s, subnet.id, address)} "
                        f"on network {network.name}"
                    )
                return subnet, plan, address
        cidrs = ", ".join(sn.cidr for sn in subnets)
        raise InvalidInput(
            f"{_key(field, 'ip')}: {address} is not in a subnet of network {network.name} ({cidrs})"
        )
    for subnet in subnets:
        plan = subnet_plan(subnet)
        free = ipam.first_free(plan, used_addresses(s, subnet.id))
        if free is not None:
            return subnet, plan, free
    pools = "; ".join(f"{sn.cidr}: {subnet_plan(sn).describe_pools()}" for sn in subnets)
    raise Conflict(f"{_key(field, 'network')}: no free address left on network {network.name} ({pools})")


def attach(
    s: Session, *, project: str, instance_id: str, requests: Sequence[InstanceNetwork]
) -> list[PortSpec]:
    """Make the ports of a new instance (whose row is already in ``s``). Raises InvalidInput or
    Conflict naming ``networks[i]...``, or AllocationRace."""
    if len(requests) > MAX_NICS:
        raise InvalidInput(f"networks: at most {MAX_NICS} networks per instance")
    specs: list[PortSpec] = []
    seen: dict[str, int] = {}
    now = now_iso()
    for i, request in enumerate(requests):
        field = f"networks[{i}]"
        try:
            network = resolve_network(s, project, request.network)
        except NotFound as e:
            raise InvalidInput(f"{field}.network: {e.message}") from e
        refuse_external(network, f"{field}.network")
        if network.id in seen:
            raise InvalidInput(f"{field}.network: {network.name} is already networks[{seen[network.id]}]")
        seen[network.id] = i
        specs.append(
            new_port(
                s,
                project=project,
                instance_id=instance_id,
                network=network,
                device=f"eth{i}",
                request=request,
                field=field,
                now=now,
            )
        )
    return specs


def new_port(
    s: Session,
    *,
    project: str,
    instance_id: str,
    network: NetworkRow,
    device: str,
    request: InstanceNetwork,
    field: str,
    now: str,
) -> PortSpec:
    """One port of an instance on ``network`` with its address (fixed or the next free one). Raises
    InvalidInput or Conflict naming ``field``, or AllocationRace."""
    subnets = network_subnets(s, network.id)
    if not subnets:
        raise InvalidInput(
            f"{_key(field, 'network')}: network {network.name} has no subnet; create one first"
        )
    subnet, plan, address = _pick(s, network, subnets, request.ip, field)
    mac = _chosen_mac(s, network, request.mac, field) if request.mac else random_mac()
    port = PortRow(
        id=new_id(),
        project=project,
        network_id=network.id,
        instance_id=instance_id,
        device=device,
        mac=mac,
        aliases=list(request.aliases),
        created_at=now,
    )
    s.add(port)
    try:
        s.flush()  # the port first: nothing orders the two inserts by their foreign key
        s.add(IpAllocationRow(subnet_id=subnet.id, address=str(address), port_id=port.id))
        s.flush()
    except IntegrityError as e:
        raise AllocationRace(f"{field}: {address} or the MAC was taken meanwhile") from e
    return PortSpec(
        id=port.id,
        network_id=network.id,
        mac=port.mac,
        ip=str(address),
        prefix_len=plan.cidr.prefixlen,
        device=port.device,
        gateway=str(plan.gateway) if plan.gateway is not None else "",
        mtu=network.mtu,
        dns=[str(d) for d in plan.dns],
        aliases=list(request.aliases),
        ip_requested=request.ip is not None,
    )


def _allocations(s: Session, port_id: str) -> list[IpAllocationRow]:
    return list(s.scalars(select(IpAllocationRow).where(IpAllocationRow.port_id == port_id)))


def list_ports(
    ctl: Controller, *, project: str, network: str | None = None, instance: str | None = None
) -> list[Port]:
    with ctl.sessions() as s:
        require_project(s, project)
        query = select(PortRow).where(PortRow.project == project)
        if network:
            query = query.where(PortRow.network_id == resolve_network(s, project, network).id)
        if instance:
            by_name = select(InstanceRow.id).where(
                InstanceRow.project == project, InstanceRow.name == instance
            )
            query = query.where(PortRow.instance_id.in_([instance, *s.scalars(by_name)]))
        rows = s.scalars(query.order_by(PortRow.created_at, PortRow.device, PortRow.id))
        return [port_view(r, _allocations(s, r.id), port_groups(s, r.id)) for r in rows]


def get_port(ctl: Controller, *, project: str, ref: str) -> Port:
    """A port by id or unique id prefix (at least 4 hex digits)."""
    with ctl.sessions() as s:
        require_project(s, project)
        row = s.get(PortRow, ref)
        if row is None or row.project != project:
            rows = []
            if len(ref) >= MIN_PREFIX and is_hex(ref):
                query = select(PortRow).where(PortRow.project == project, PortRow.id.startswith(ref))
                rows = list(s.scalars(query.limit(2)))
            if len(rows) > 1:
                raise Conflict(f"port id prefix {ref!r} is ambiguous")
            if not rows:
                raise NotFound(f"port {ref!r} not found")
            row = rows[0]
        return port_view(row, _allocations(s, row.id), port_groups(s, row.id))
