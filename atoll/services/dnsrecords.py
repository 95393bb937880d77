"""The names each network holds, computed from ports, for the hosts' resolvers.

An instance is known on every network it has a port on, by its name, its short id (12 hex digits, as
Docker does) and the port's aliases, each answering with the port's address. A name exists as long as
the instance does, whether it runs or not: its address is reserved across stop and start, so there is
nothing to gain from hiding it (Docker drops stopped containers because it frees their endpoints).

Hosts receive ``NetworkNames`` for the networks they have ports on (``ControlPlane.network_names``), and
are nudged (``HostAgent.names_changed``) after every change, so a new name resolves as soon as the call
that made it returns; each host's reconcile loop fetches them again anyway, which repairs a lost nudge.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from atoll.model.dnsrecords import NameRecord, NetworkNames
from atoll.model.instance import InstanceSpec
from atoll.services.context import Controller
from atoll.store.models import InstanceRow, IpAllocationRow, PortRow, SubnetRow

log = logging.getLogger(__name__)

SHORT_ID = 12
MAX_LABEL = 63
MAX_NAME = 253


@dataclass(frozen=True)
class PortName:
    """One port as the computation needs it: the instance's names and the port's address."""

    network_id: str
    instance_id: str
    instance_name: str
    aliases: tuple[str, ...]
    address: str


def dns_name(text: str) -> str | None:
    """``text`` as a lookup key (lower case, no trailing dot), or None if it cannot be a DNS name."""
    name = text.strip().rstrip(".").lower()
    if not name or len(name) > MAX_NAME:
        return None
    if any(not label or len(label) > MAX_LABEL for label in name.split(".")):
        return None
    return name


def compute(ports: Iterable[PortName], cidrs: dict[str, list[str]]) -> list[NetworkNames]:
    """Group ports by network into records. Pure: ``ports`` and ``cidrs`` come from the database."""
    records: dict[str, list[NameRecord]] = {network_id: [] for network_id in cidrs}
    for port in sorted(ports, key=lambda p: (p.network_id, p.instance_name, p.instance_id)):
        seen: set[str] = set()
        out = records.setdefault(port.network_id, [])
        names = [port.instance_name, port.instance_id[:SHORT_ID], *port.aliases]
        for index, text in enumerate(names):
            name = dns_name(text)
            if name is None or name in seen:
                continue
            seen.add(name)
            out.append(NameRecord(name, port.address, port.instance_id, primary=index == 0))
    return [
        NetworkNames(
            network_id=network_id, records=records[network_id], cidrs=sorted(cidrs.get(network_id, []))
        )
        for network_id in sorted(records)
    ]


def network_names(ctl: Controller, host_id: str) -> list[NetworkNames]:
    """The names of every network that has a port on ``host_id``, including peers on other hosts."""
    with ctl.sessions() as s:
        local = (
            select(PortRow.network_id)
            .join(InstanceRow, PortRow.instance_id == InstanceRow.id)
            .where(InstanceRow.host_id == host_id)
            .distinct()
        )
        network_ids = set(s.scalars(local))
        if not network_ids:
            return []
        rows = s.execute(
            select(
                PortRow.network_id, InstanceRow.id, InstanceRow.name, PortRow.aliases, IpAllocationRow.address
            )
            .join(InstanceRow, PortRow.instance_id == InstanceRow.id)
            .join(IpAllocationRow, IpAllocationRow.port_id == PortRow.id)
            .where(PortRow.network_id.in_(network_ids))
        )
        ports = [
            PortName(network_id, instance_id, name, tuple(aliases or ()), address)
            for network_id, instance_id, name, aliases, address in rows
        ]
        cidrs: dict[str, list[str]] = {network_id: [] for network_id in network_ids}
        for network_id, cidr in s.execute(
            select(SubnetRow.network_id, SubnetRow.cidr).where(SubnetRow.network_id.in_(network_ids))
        ):
            cidrs[network_id].append(cidr)
    return compute(ports, cidrs)


async def announce(ctl: Controller, network_ids: Iterable[str]) -> None:
    """Tell the connected hosts that names on ``network_ids`` changed. A host that misses it catches up
    at its next reconcile, so a failure here never fails the user's call."""
    changed = sorted(set(network_ids))
    if not changed:
        return
    for agent in ctl.agents.all():
        try:
            await agent.names_changed(changed)
        except Exception:
            log.warning("host %s was not told that names changed; it will catch up", agent.host_id)


def spec_networks(spec: InstanceSpec) -> list[str]:
    return [port.network_id for port in spec.ports]


def instance_networks(ctl: Controller, instance_id: str) -> list[str]:
    """The networks an instance has ports on (read before it is deleted, to announce the change)."""
    with ctl.sessions() as s:
        return list(s.scalars(select(PortRow.network_id).where(PortRow.instance_id == instance_id)))
