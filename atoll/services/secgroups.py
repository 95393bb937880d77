"""Security groups and their rules: create, list, inspect, delete, within a project.

Neutron's model: a group is a set of allow rules; a port in several groups gets the union; replies of
allowed connections always pass. Every project has a ``default`` group, made on first need (listing
groups, or creating an instance), that allows all egress and ingress from its own members. A new
group starts with one rule, all egress, as in Neutron: ingress is closed until rules open it.

Every rule is validated before the one transaction that writes it, so a bad rule leaves nothing; each
error names its field. A group still used by a port, or named as the remote group of another group's
rule, cannot be deleted (409); nor can ``default`` (as in Neutron). Hosts learn about every change
at once (``secgroup_notify``).
"""

from __future__ import annotations

from ipaddress import IPv4Network

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput, NotFound
from atoll.model.secgroups import DEFAULT_GROUP, Direction, Protocol
from atoll.schemas import SecurityGroup, SecurityGroupCreate, SecurityGroupRule, SecurityGroupRuleCreate
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.ids import is_hex, new_id
from atoll.services.projects import require_project
from atoll.services.secgroup_notify import security_changed
from atoll.store.secgroups import PortSecurityGroupRow, SecurityGroupRow, SecurityGroupRuleRow

MIN_PREFIX_REF = 4
ETHERTYPES = ("IPv4",)
PORTED = (Protocol.TCP, Protocol.UDP)


def resolve_group(s: Session, project: str, ref: str) -> SecurityGroupRow:
    """A group of ``project`` by id, name or unique id prefix; ``default`` is made if it is missing."""
    row = s.get(SecurityGroupRow, ref)
    if row is not None and row.project == project:
        return row
    row = s.scalar(
        select(SecurityGroupRow).where(SecurityGroupRow.project == project, SecurityGroupRow.name == ref)
    )
    if row is not None:
        return row
    if ref == DEFAULT_GROUP:
        return ensure_default(s, project)
    if len(ref) >= MIN_PREFIX_REF and is_hex(ref):
        query = select(SecurityGroupRow).where(
            SecurityGroupRow.project == project, SecurityGroupRow.id.startswith(ref)
        )
        rows = list(s.scalars(query.limit(2)))
        if len(rows) > 1:
            raise Conflict(f"security group id prefix {ref!r} is ambiguous")
        if rows:
            return rows[0]
    raise NotFound(f"security group {ref!r} not found")


def ensure_default(s: Session, project: str) -> SecurityGroupRow:
    row = s.scalar(
        select(SecurityGroupRow).where(
            SecurityGroupRow.project == project, SecurityGroupRow.name == DEFAULT_GROUP
        )
    )
    if row is not None:
        return row
    now = now_iso()
    row = SecurityGroupRow(
        id=new_id(), project=project, name=DEFAULT_GROUP, description="Default security group", created_at=now
    )
    s.add(row)
    s.flush()
    s.add(_open_rule(row, Direction.EGRESS, None))
    s.add(_open_rule(row, Direction.INGRESS, row.id))
    s.flush()
    return row


def _open_rule(group: SecurityGroupRow, direction: Direction, remote: str | None) -> SecurityGroupRuleRow:
    """Any protocol, any port, to or from anywhere (or ``remote``'s members)."""
    return SecurityGroupRuleRow(
        id=new_id(),
        project=group.project,
        group_id=group.id,
        direction=direction.value,
        ethertype="IPv4",
        protocol=Protocol.ANY.value,
        port_min=None,
        port_max=None,
        remote_cidr="" if remote else "0.0.0.0/0",
        remote_group_id=remote,
        created_at=group.created_at,
    )


def _rules(s: Session, group_id: str) -> list[SecurityGroupRuleRow]:
    query = select(SecurityGroupRuleRow).where(SecurityGroupRuleRow.group_id == group_id)
    return list(s.scalars(query.order_by(SecurityGroupRuleRow.created_at, SecurityGroupRuleRow.id)))


def rule_view(row: SecurityGroupRuleRow) -> SecurityGroupRule:
    return SecurityGroupRule(
        id=row.id,
        group=row.group_id,
        direction=row.direction,
        ethertype=row.ethertype,
        protocol=row.protocol,
        port_range_min=row.port_min,
        port_range_max=row.port_max,
        remote_ip_prefix=row.remote_cidr or None,
        remote_group=row.remote_group_id,
        created_at=row.created_at,
    )


def group_view(s: Session, row: SecurityGroupRow) -> SecurityGroup:
    return SecurityGroup(
        id=row.id,
        name=row.name,
        project=row.project,
        description=row.description,
        rules=[rule_view(r) for r in _rules(s, row.id)],
        created_at=row.created_at,
    )


def create_group(ctl: Controller, *, project: str, request: SecurityGroupCreate) -> SecurityGroup:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        ensure_default(s, project)
        taken = s.scalar(
            select(SecurityGroupRow).where(
                SecurityGroupRow.project == project, SecurityGroupRow.name == request.name
            )
        )
        if taken is not None:
            raise Conflict(f"name: security group {request.name!r} already exists")
        row = SecurityGroupRow(
            id=new_id(),
            project=project,
            name=request.name,
            description=request.description,
            created_at=now_iso(),
        )
        s.add(row)
        try:
            s.flush()
        except IntegrityError as e:
            raise Conflict(f"name: security group {request.name!r} already exists") from e
        s.add(_open_rule(row, Direction.EGRESS, None))  # Neutron's rule: new groups allow all egress
        s.flush()
        return group_view(s, row)


def list_groups(ctl: Controller, *, project: str) -> list[SecurityGroup]:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        ensure_default(s, project)
        rows = s.scalars(
            select(SecurityGroupRow)
            .where(SecurityGroupRow.project == project)
            .order_by(SecurityGroupRow.created_at, SecurityGroupRow.name)
        )
        return [group_view(s, r) for r in rows]


def get_group(ctl: Controller, *, project: str, ref: str) -> SecurityGroup:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        return group_view(s, resolve_group(s, project, ref))


async def remove_group(ctl: Controller, *, project: str, ref: str) -> None:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve_group(s, project, ref)
        if row.name == DEFAULT_GROUP:
            raise Conflict("the default security group of a project cannot be deleted")
        users = s.scalar(
            select(PortSecurityGroupRow.port_id).where(PortSecurityGroupRow.group_id == row.id).limit(1)
        )
        if users is not None:
            raise Conflict(f"security group {row.name} is in use by port {users[:12]}")
        referrer = s.scalar(
            select(SecurityGroupRuleRow).where(
                SecurityGroupRuleRow.remote_group_id == row.id, SecurityGroupRuleRow.group_id != row.id
            )
        )
        if referrer is not None:
            owner = s.get(SecurityGroupRow, referrer.group_id)
            raise Conflict(
                f"security group {row.name} is the remote group of rule {referrer.id[:12]} of group "
                f"{owner.name if owner else referrer.group_id[:12]}"
            )
        for rule in _rules(s, row.id):
            s.delete(rule)  # first: its self-references would block deleting the group
        s.flush()
        s.delete(row)
    await security_changed(ctl)


def _check_rule(s: Session, project: str, request: SecurityGroupRuleCreate) -> SecurityGroupRuleRow:
    """The rule as a row (not added), or InvalidInput naming the field."""
    try:
        direction = Direction(request.direction)
    except ValueError:
        raise InvalidInput(f"direction: {request.direction!r} is not ingress or egress") from None
    if request.ethertype not in ETHERTYPES:
        raise InvalidInput(f"ethertype: {request.ethertype!r} is not supported; tenant networks are IPv4")
    try:
        protocol = Protocol(request.protocol.lower())
    except ValueError:
        raise InvalidInput(f"protocol: {request.protocol!r} is not one of tcp, udp, icmp, any") from None
    low, high = request.port_range_min, request.port_range_max
    if high is not None and low is None:
        raise InvalidInput("port_range_min: missing while port_range_max is given")
    if low is not None:
        high = low if high is None else high
        if protocol not in PORTED:
            raise InvalidInput(f"port_range_min: a port range needs protocol tcp or udp, not {protocol}")
        for name, value in (("port_range_min", low), ("port_range_max", high)):
            if not 1 <= value <= 65535:
                raise InvalidInput(f"{name}: {value} is not a port (1-65535)")
        if low > high:
            raise InvalidInput(f"port_range_max: {high} is below port_range_min {low}")
    if request.remote_ip_prefix is not None and request.remote_group is not None:
        raise InvalidInput("remote_group: give either remote_ip_prefix or remote_group, not both")
    cidr, remote_id = "0.0.0.0/0", None
    if request.remote_ip_prefix is not None:
        try:
            cidr = str(IPv4Network(request.remote_ip_prefix.strip()))
        except ValueError as e:
            raise InvalidInput(
                f"remote_ip_prefix: {request.remote_ip_prefix!r} is not an IPv4 CIDR ({e})"
            ) from None
    if request.remote_group is not None:
        try:
            remote_id = resolve_group(s, project, request.remote_group).id
        except NotFound as e:
            raise InvalidInput(f"remote_group: {e.message}") from None
        cidr = ""
    return SecurityGroupRuleRow(
        id=new_id(),
        project=project,
        direction=direction.value,
        ethertype="IPv4",
        protocol=protocol.value,
        port_min=low,
        port_max=high,
        remote_cidr=cidr,
        remote_group_id=remote_id,
        created_at=now_iso(),
    )


def _same(a: SecurityGroupRuleRow, b: SecurityGroupRuleRow) -> bool:
    keys = ("direction", "protocol", "port_min", "port_max", "remote_cidr", "remote_group_id")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


async def add_rule(
    ctl: Controller, *, project: str, group: str, request: SecurityGroupRuleCreate
) -> SecurityGroupRule:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve_group(s, project, group)
        rule = _check_rule(s, project, request)
        rule.group_id = row.id
        for existing in _rules(s, row.id):
            if _same(existing, rule):
                raise Conflict(f"security group {row.name} already has this rule ({existing.id[:12]})")
        s.add(rule)
        view = rule_view(rule)
    await security_changed(ctl)
    return view


async def remove_rule(ctl: Controller, *, project: str, ref: str) -> None:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        rule = s.get(SecurityGroupRuleRow, ref)
        if rule is None or rule.project != project:
            rows = []
            if len(ref) >= MIN_PREFIX_REF and is_hex(ref):
                query = select(SecurityGroupRuleRow).where(
                    SecurityGroupRuleRow.project == project, SecurityGroupRuleRow.id.startswith(ref)
                )
                rows = list(s.scalars(query.limit(2)))
            if len(rows) > 1:
                raise Conflict(f"security group rule id prefix {ref!r} is ambiguous")
            if not rows:
                raise NotFound(f"security group rule {ref!r} not found")
            rule = rows[0]
        s.delete(rule)
    await security_changed(ctl)
