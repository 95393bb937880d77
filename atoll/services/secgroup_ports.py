"""Which security groups each port is in, and what a host must enforce.

``bind`` runs inside the transaction that creates an instance and its ports, so a port never exists
without its groups. ``host_security`` is the controller's answer to ``ControlPlane.security``: the ports
of a host with their groups, and each group's rules and members (the addresses of every port in it),
which is what remote-group rules match.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.model.errors import InvalidInput, NotFound
from atoll.model.network import PortSpec
from atoll.model.secgroups import (
    DEFAULT_GROUP,
    Direction,
    GroupPolicy,
    HostSecurity,
    PortSecurity,
    Protocol,
    RuleSpec,
)
from atoll.services.context import Controller
from atoll.services.secgroups import resolve_group
from atoll.store.models import InstanceRow, IpAllocationRow, PortRow
from atoll.store.secgroups import PortSecurityGroupRow, SecurityGroupRuleRow

MAX_GROUPS = 16


def resolve_all(s: Session, project: str, refs: Sequence[str], field: str) -> list[str]:
    if len(refs) > MAX_GROUPS:
        raise InvalidInput(f"{field}: at most {MAX_GROUPS} security groups")
    ids: list[str] = []
    for i, ref in enumerate(refs):
        try:
            group_id = resolve_group(s, project, ref).id
        except NotFound as e:
            raise InvalidInput(f"{field}[{i}]: {e.message}") from None
        if group_id not in ids:
            ids.append(group_id)
    return ids


def bind(s: Session, *, project: str, ports: Sequence[PortSpec], groups: Sequence[str] | None) -> None:
    """Put new ports in ``groups`` (names or ids; None: the project's ``default`` group)."""
    ids = resolve_all(s, project, [DEFAULT_GROUP] if groups is None else groups, "security_groups")
    for port in ports:
        for group_id in ids:
            s.add(PortSecurityGroupRow(port_id=port.id, group_id=group_id))
    s.flush()


def port_groups(s: Session, port_id: str) -> list[str]:
    query = select(PortSecurityGroupRow.group_id).where(PortSecurityGroupRow.port_id == port_id)
    return sorted(s.scalars(query))


def set_groups(s: Session, port_ids: Sequence[str], group_ids: Sequence[str]) -> None:
    for port_id in port_ids:
        for row in s.scalars(select(PortSecurityGroupRow).where(PortSecurityGroupRow.port_id == port_id)):
            s.delete(row)
        s.flush()
        for group_id in group_ids:
            s.add(PortSecurityGroupRow(port_id=port_id, group_id=group_id))
    s.flush()


def _addresses(s: Session, port_ids: Sequence[str]) -> dict[str, str]:
    query = select(IpAllocationRow.port_id, IpAllocationRow.address).where(
        IpAllocationRow.port_id.in_(port_ids)
    )
    return {port_id: address for port_id, address in s.execute(query)}


def _rule_spec(row: SecurityGroupRuleRow) -> RuleSpec:
    return RuleSpec(
        direction=Direction(row.direction),
        protocol=Protocol(row.protocol),
        port_min=row.port_min,
        port_max=row.port_max,
        remote_cidr=row.remote_cidr,
        remote_group=row.remote_group_id or "",
    )


def _groups_of(s: Session, port_ids: Sequence[str]) -> dict[str, list[str]]:
    """Each port's groups (sorted), in one query rather than one per port."""
    query = select(PortSecurityGroupRow.port_id, PortSecurityGroupRow.group_id).where(
        PortSecurityGroupRow.port_id.in_(port_ids)
    )
    out: dict[str, list[str]] = {}
    for port_id, group_id in s.execute(query):
        out.setdefault(port_id, []).append(group_id)
    return {port_id: sorted(groups) for port_id, groups in out.items()}


def _rules_of(s: Session, group_ids: Sequence[str]) -> dict[str, list[SecurityGroupRuleRow]]:
    query = (
        select(SecurityGroupRuleRow)
        .where(SecurityGroupRuleRow.group_id.in_(group_ids))
        .order_by(SecurityGroupRuleRow.id)
    )
    out: dict[str, list[SecurityGroupRuleRow]] = {g: [] for g in group_ids}
    for row in s.scalars(query):
        out[row.group_id].append(row)
    return out


def _members_of(s: Session, group_ids: Sequence[str]) -> dict[str, list[str]]:
    """Each group's member addresses (sorted, once each), over every host."""
    query = (
        select(PortSecurityGroupRow.group_id, IpAllocationRow.address)
        .join(PortSecurityGroupRow, PortSecurityGroupRow.port_id == IpAllocationRow.port_id)
        .where(PortSecurityGroupRow.group_id.in_(group_ids))
    )
    out: dict[str, set[str]] = {g: set() for g in group_ids}
    for group_id, address in s.execute(query):
        out[group_id].add(address)
    return {g: sorted(addresses) for g, addresses in out.items()}


def host_security(ctl: Controller, host_id: str) -> HostSecurity:
    """The policy of every port on ``host_id``. A fixed number of queries, whatever the number of
    ports: it is computed for every instance created on the host (and grew with every container)."""
    with ctl.sessions() as s:
        query = (
            select(PortRow)
            .join(InstanceRow, PortRow.instance_id == InstanceRow.id)
            .where(InstanceRow.host_id == host_id)
            .order_by(PortRow.id)
        )
        rows = list(s.scalars(query))
        port_ids = [r.id for r in rows]
        addresses = _addresses(s, port_ids)
        groups_of = _groups_of(s, port_ids)
        ports = [
            PortSecurity(
                port_id=r.id,
                network_id=r.network_id,
                ip=addresses.get(r.id, ""),
                mac=r.mac,
                groups=groups_of.get(r.id, []),
            )
            for r in rows
        ]
        wanted = sorted({g for p in ports for g in p.groups})
        rules = _rules_of(s, wanted)
        # A remote group only needs its members here (its own rules apply to its own ports).
        remotes = {r.remote_group_id for rs in rules.values() for r in rs if r.remote_group_id}
        every = sorted(set(wanted) | remotes)
        members = _members_of(s, every)
        groups = [
            GroupPolicy(
                id=group_id,
                rules=[_rule_spec(r) for r in rules.get(group_id, [])],
                members=members[group_id],
            )
            for group_id in every
        ]
        return HostSecurity(ports=ports, groups=groups)
