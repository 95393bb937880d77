"""Conntrack zones: each tenant bridge of a host has its own, so two networks' flows never share an
entry, even with the same addresses and ports (overlapping CIDRs in two projects, say)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from atoll.agent.net import netns, nft
from atoll.agent.net.dataplane import HostNetwork
from atoll.agent.net.names import Names
from atoll.model.secgroups import Direction, GroupPolicy, HostSecurity, PortSecurity, Protocol, RuleSpec

from .helpers import Host, Server, in_netns, instance, new_id, port

EGRESS_ANY = RuleSpec(Direction.EGRESS)
WEB = RuleSpec(Direction.INGRESS, Protocol.TCP, 80, 80)
SPORT = 40404


def _until(path: Path, *ss_filter: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if in_netns(path, "ss", "-Htn", *ss_filter).stdout.strip():
            return
        time.sleep(0.02)
    raise AssertionError(f"no socket in {path.name[:12]} matches {' '.join(ss_filter)}")


def _python(path: Path, script: str) -> subprocess.Popen[bytes]:
    """``script`` in the namespace at ``path``, until its stdin closes or it is killed."""
    return subprocess.Popen(
        ["nsenter", f"--net={path}", sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_the_same_flow_in_two_networks_is_judged_apart(dataplane: HostNetwork, tmp_path: Path) -> None:
    """Project A's group lets tcp 80 in; project B's lets nothing in. A's connection is open from
    10.0.0.2:SPORT to 10.0.0.3:80; B's instances have the same addresses, and B's attempt from the
    same port must still be refused (one shared conntrack entry would make it "established")."""
    net_a, net_b, group_a, group_b = new_id(), new_id(), new_id(), new_id()
    a1, a2 = instance(port(net_a, "10.0.0.2")), instance(port(net_a, "10.0.0.3"))
    b1, b2 = instance(port(net_b, "10.0.0.2")), instance(port(net_b, "10.0.0.3"))
    members = [(s, net_a, group_a) for s in (a1, a2)] + [(s, net_b, group_b) for s in (b1, b2)]
    ports = [PortSecurity(s.ports[0].id, net, s.ports[0].ip, s.ports[0].mac, [g]) for s, net, g in members]
    a_policy = GroupPolicy(group_a, [EGRESS_ANY, WEB], [])
    asyncio.run(
        dataplane.set_security(HostSecurity(ports, [a_policy, GroupPolicy(group_b, [EGRESS_ANY], [])]))
    )
    for spec in (a1, a2, b1, b2):
        asyncio.run(dataplane.attach(spec))
    at = dataplane.netns_path
    procs = [
        _python(
            at(a2.id),
            "import socket, sys\ns = socket.create_server(('', 80))\nc = s.accept()\nsys.stdin.read()",
        )
    ]
    server = Server(at(b2.id), 80, tmp_path / "www")

    def b_connects() -> bool:
        args = ["curl", "-s", "-o", "/dev/null", "-m", "2", "--local-port", str(SPORT), "http://10.0.0.3/"]
        return in_netns(at(b1.id), *args).returncode == 0

    try:
        _until(at(a2.id), "state", "listening", "sport = :80")
        assert not b_connects()  # B's group, alone
        # (busybox nc does not bind its -p port when it connects: python holds A's connection open)
        connect = f"socket.create_connection(('10.0.0.3', 80), source_address=('', {SPORT}))"
        procs.append(_python(at(a1.id), f"import socket, sys\ns = {connect}\nsys.stdin.read()"))
        _until(at(a1.id), "state", "established", f"sport = :{SPORT}")
        assert not b_connects(), "B's group lets nothing in, yet A's open flow let B's through"
        # The control: B's group, opened, lets the same attempt in beside A's flow.
        opened = HostSecurity(ports, [a_policy, GroupPolicy(group_b, [EGRESS_ANY, WEB], [])])
        asyncio.run(dataplane.set_security(opened))
        assert b_connects()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        server.stop()


def test_a_new_agent_keeps_the_zones_of_the_bridges(dataplane: HostNetwork, host: Host) -> None:
    """An open flow is found only in the zone it was made in: a new agent must not renumber."""

    def zones() -> dict[str, int]:
        return netns.run_in(host.path, lambda: nft.zones(dataplane.names))

    specs = [instance(port(new_id(), "10.0.0.2")) for _ in range(3)]
    for spec in specs:
        asyncio.run(dataplane.attach(spec))
    before = zones()
    assert sorted(before.values()) == [1, 2, 3]
    # Without the bridge of zone 1, an agent numbering afresh would give the other two 1 and 2.
    first = next(s for s in specs if before[dataplane.names.bridge(s.ports[0].network_id)] == 1)
    kept = [s for s in specs if s is not first]
    asyncio.run(dataplane.release(first.id, first.ports))
    asyncio.run(dataplane.sync(kept))
    left = zones()
    assert sorted(left.values()) == [2, 3]
    fresh = HostNetwork(dataplane.config)
    asyncio.run(fresh.sync(kept))
    assert zones() == left
    another = instance(port(new_id(), "10.0.0.2"))
    asyncio.run(fresh.attach(another))  # and a new bridge gets the free number
    assert zones() == {**left, dataplane.names.bridge(another.ports[0].network_id): 1}


def test_a_table_from_before_zones_gives_no_numbers(host: Host, names: Names) -> None:
    """An agent from before zones left a table without the map: the new one numbers afresh."""
    netns.run_in(host.path, lambda: nft.apply(f"table inet {names.table} {{\n}}\n"))
    try:
        assert netns.run_in(host.path, lambda: nft.zones(names)) == {}
    finally:
        netns.run_in(host.path, lambda: nft.apply(nft.render_delete(names)))
    assert netns.run_in(host.path, lambda: nft.zones(names)) == {}  # and no table at all
