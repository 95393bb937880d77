"""Security groups on a real kernel: the dataplane of a host namespace per test (see conftest) given a
``HostSecurity`` as the controller would compute it; busybox httpd in instances, curl as the client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from atoll.agent.net.dataplane import HostNetwork
from atoll.model.instance import InstanceSpec
from atoll.model.secgroups import Direction, GroupPolicy, HostSecurity, PortSecurity, Protocol, RuleSpec

from .helpers import Host, Server, fetch, in_netns, instance, new_id, ping, port

NET = new_id()
WEB, CLIENTS, OTHERS = new_id(), new_id(), new_id()
EGRESS_ANY = RuleSpec(Direction.EGRESS)


def policy(
    members: dict[str, list[InstanceSpec]], extra: dict[str, list[RuleSpec]] | None = None
) -> HostSecurity:
    """Groups WEB (tcp 80 from CLIENTS), CLIENTS and OTHERS (egress only), with ``members`` in them."""
    rules = {
        WEB: [EGRESS_ANY, RuleSpec(Direction.INGRESS, Protocol.TCP, 80, 80, remote_group=CLIENTS)],
        CLIENTS: [EGRESS_ANY],
        OTHERS: [EGRESS_ANY],
    }
    for group, more in (extra or {}).items():
        rules[group] = rules[group] + more
    in_group: dict[str, list[str]] = {}
    for group, specs in members.items():
        for spec in specs:
            in_group.setdefault(spec.ports[0].id, []).append(group)
    ports = [
        PortSecurity(p.id, p.network_id, p.ip, p.mac, sorted(in_group.get(p.id, [])))
        for specs in members.values()
        for spec in specs
        for p in spec.ports
    ]
    groups = [
        GroupPolicy(g, rules[g], sorted(s.ports[0].ip for s in members.get(g, [])))
        for g in (WEB, CLIENTS, OTHERS)
    ]
    return HostSecurity(ports=list({p.port_id: p for p in ports}.values()), groups=groups)


@pytest.fixture
def trio(dataplane: HostNetwork, tmp_path: Path) -> Iterator[tuple[InstanceSpec, InstanceSpec, InstanceSpec]]:
    """client (CLIENTS) 10.0.0.2, web (WEB) 10.0.0.3 serving on 80 and 81, other (OTHERS) 10.0.0.4."""
    client = instance(port(NET, "10.0.0.2"))
    web = instance(port(NET, "10.0.0.3"))
    other = instance(port(NET, "10.0.0.4"))
    asyncio.run(dataplane.set_security(policy({CLIENTS: [client], WEB: [web], OTHERS: [other]})))
    for spec in (client, web, other):
        asyncio.run(dataplane.attach(spec))
    servers = [Server(dataplane.netns_path(web.id), p, tmp_path / "www") for p in (80, 81)]
    try:
        yield client, web, other
    finally:
        for server in servers:
            server.stop()


def test_rules_allow_and_deny_tcp(dataplane: HostNetwork, trio: tuple[InstanceSpec, ...]) -> None:
    client, web, other = trio
    at = dataplane.netns_path
    assert fetch(at(client.id), "http://10.0.0.3:80/")  # WEB allows tcp 80 from CLIENTS
    assert not fetch(at(client.id), "http://10.0.0.3:81/")  # ... and nothing else
    assert not ping(at(client.id), "10.0.0.3")
    assert not fetch(at(other.id), "http://10.0.0.3:80/")  # OTHERS is not CLIENTS
    # Egress is allowed and replies pass: web reaches the others (their ingress allows nothing, though).
    assert not ping(at(web.id), "10.0.0.2")


def test_a_rule_change_applies_to_running_instances(
    dataplane: HostNetwork, trio: tuple[InstanceSpec, ...]
) -> None:
    client, web, other = trio
    at = dataplane.netns_path
    assert not fetch(at(other.id), "http://10.0.0.3:81/")
    opened = RuleSpec(Direction.INGRESS, Protocol.TCP, 81, 90, remote_cidr="10.0.0.4/32")
    members = {CLIENTS: [client], WEB: [web], OTHERS: [other]}
    asyncio.run(dataplane.set_security(policy(members, {WEB: [opened]})))
    assert fetch(at(other.id), "http://10.0.0.3:81/")
    assert not fetch(at(other.id), "http://10.0.0.3:80/")
    # Membership: other joins CLIENTS (a port's groups changed), and reaches port 80 too.
    asyncio.run(dataplane.set_security(policy({**members, CLIENTS: [client, other]}, {WEB: [opened]})))
    assert fetch(at(other.id), "http://10.0.0.3:80/")
    # And back: the rule goes; the connection state of the old one does not keep new ones open.
    asyncio.run(dataplane.set_security(policy(members)))
    assert not fetch(at(other.id), "http://10.0.0.3:81/")


def test_a_spoofed_source_is_dropped(
    dataplane: HostNetwork, host: Host, trio: tuple[InstanceSpec, ...]
) -> None:
    """Rules trust source addresses; the bridge-family table makes sure a port only sends its own."""
    client, web, other = trio
    members = {CLIENTS: [client], WEB: [web], OTHERS: [other]}
    trusted = RuleSpec(Direction.INGRESS, Protocol.TCP, 81, 81, remote_cidr="10.0.0.9/32")
    asyncio.run(dataplane.set_security(policy(members, {WEB: [trusted]})))
    path = dataplane.netns_path(other.id)
    in_netns(path, "ip", "addr", "add", "10.0.0.9/24", "dev", "eth0")
    assert not fetch(path, "http://10.0.0.3:81/", source="10.0.0.9")
    # The control: without the anti-spoofing table the forged source gets through; a sync restores it.
    host.run("nft", "delete", "table", "bridge", dataplane.names.table)
    # (The forged attempt above left the neighbour entry of 10.0.0.3 unresolved: its ARP request,
    # sent from 10.0.0.9, was dropped too. Start afresh rather than race its retries.)
    in_netns(path, "ip", "neigh", "flush", "dev", "eth0")
    assert fetch(path, "http://10.0.0.3:81/", source="10.0.0.9")
    asyncio.run(dataplane.sync([client, web, other]))
    assert not fetch(path, "http://10.0.0.3:81/", source="10.0.0.9")


def test_default_group_semantics_and_fail_closed(dataplane: HostNetwork, tmp_path: Path) -> None:
    """The default group: egress anywhere, ingress from members. A port the policy does not know yet
    gets nothing through (fail closed)."""
    group = new_id()
    default = GroupPolicy(
        group, [EGRESS_ANY, RuleSpec(Direction.INGRESS, remote_group=group)], ["10.0.0.2", "10.0.0.3"]
    )
    a, b = instance(port(NET, "10.0.0.2")), instance(port(NET, "10.0.0.3"))
    stranger = instance(port(NET, "10.0.0.5"))
    ports = [PortSecurity(s.ports[0].id, NET, s.ports[0].ip, s.ports[0].mac, [group]) for s in (a, b)]
    asyncio.run(dataplane.set_security(HostSecurity(ports=ports, groups=[default])))
    for spec in (a, b, stranger):
        asyncio.run(dataplane.attach(spec))
    at = dataplane.netns_path
    assert ping(at(a.id), "10.0.0.3") and ping(at(b.id), "10.0.0.2")
    assert not ping(at(stranger.id), "10.0.0.2")
    assert not ping(at(a.id), "10.0.0.5")


def test_rules_survive_a_restarted_agent(
    dataplane: HostNetwork, host: Host, trio: tuple[InstanceSpec, ...]
) -> None:
    client, web, other = trio
    at = dataplane.netns_path
    # A new agent, before it learned the policy, must not open anything; the kernel keeps the rules.
    fresh = HostNetwork(dataplane.config)
    assert fetch(at(client.id), "http://10.0.0.3:80/")
    assert not fetch(at(other.id), "http://10.0.0.3:80/")
    asyncio.run(fresh.set_security(policy({CLIENTS: [client], WEB: [web], OTHERS: [other]})))
    asyncio.run(fresh.sync([client, web, other]))
    assert fetch(at(client.id), "http://10.0.0.3:80/")
    assert not fetch(at(other.id), "http://10.0.0.3:80/")
    assert "sg_ingress" in host.run("nft", "list", "table", "inet", dataplane.names.table).stdout
