"""Tenant traffic on a host where dockerd's iptables rules are in place (see agent/net/dockercompat.py).

The test's host namespace gets what dockerd sets up: ``br_netfilter`` on, iptables' ``FORWARD`` policy
``DROP``, and a ``DOCKER-USER`` chain that ``FORWARD`` jumps to first. All of it is in the namespace, so
the machine's own iptables are never touched.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from atoll.agent.net import dockercompat
from atoll.agent.net.dataplane import HostNetwork
from atoll.model.publish import PublishedPort
from tests.prefix import RUN_PREFIX

from .helpers import Host, Server, fetch, in_netns, instance, new_id, ping, port

NET = new_id()


@pytest.fixture
def dockerd(dataplane: HostNetwork, host: Host) -> Iterator[None]:
    """dockerd's rules in the host namespace; removed (the whole ``ip filter`` table iptables-nft made
    there) before the dataplane's own teardown checks that no table is left."""
    host.run("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
    host.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    host.run("iptables", "-w", "-P", "FORWARD", "DROP")
    host.run("iptables", "-w", "-N", "DOCKER-USER")
    host.run("iptables", "-w", "-A", "DOCKER-USER", "-j", "RETURN")
    host.run("iptables", "-w", "-A", "FORWARD", "-j", "DOCKER-USER")
    yield
    host.run("nft", "delete", "table", "ip", "filter", check=False)


def chain(host: Host) -> list[str]:
    return host.run("iptables", "-w", "-S", "DOCKER-USER").stdout.splitlines()


@pytest.fixture
def outside(host: Host) -> Iterator[Path]:
    """A namespace with 10.98.0.2/24, joined to the host namespace (10.98.0.1/24) by a veth."""
    name = f"{RUN_PREFIX}-outside-{new_id()[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        host.run("ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", name)
        host.run("ip", "addr", "add", "10.98.0.1/24", "dev", "uplink0")
        host.run("ip", "link", "set", "uplink0", "up")
        path = Path("/run/netns") / name
        in_netns(path, "ip", "addr", "add", "10.98.0.2/24", "dev", "eth0")
        in_netns(path, "ip", "link", "set", "eth0", "up")
        yield path
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_tenant_traffic_flows_past_dockers_forward_policy(
    dockerd: None, dataplane: HostNetwork, host: Host, outside: Path, tmp_path: Path
) -> None:
    a = instance(port(NET, "10.0.0.2"))
    b = replace(instance(port(NET, "10.0.0.3")), published=[PublishedPort("tcp", 8080, 80)])
    asyncio.run(dataplane.attach(a))
    asyncio.run(dataplane.attach(b))
    ours = [line for line in chain(host) if dockercompat.comment(dataplane.names) in line]
    assert len(ours) == 3, chain(host)
    assert chain(host)[1:4] == ours  # at the head, before dockerd's RETURN
    pa = dataplane.netns_path(a.id)
    server = Server(dataplane.netns_path(b.id), 80, tmp_path / "www")
    try:
        assert ping(pa, "10.0.0.3")  # bridged within a tenant bridge
        assert fetch(outside, "http://10.98.0.1:8080/")  # a published port, DNATed and forwarded

        # The control: without our rules, dockerd's policy drops both.
        for rule in dockercompat.rules(dataplane.names):
            host.run("iptables", "-w", "-D", "DOCKER-USER", *rule)
        assert not [line for line in chain(host) if "atoll" in line]
        in_netns(pa, "ip", "neigh", "flush", "all")
        assert not ping(pa, "10.0.0.3")
        assert not fetch(outside, "http://10.98.0.1:8080/")

        # The next sync (a reconcile) puts them back: dockerd may have (re)started since.
        asyncio.run(dataplane.sync([a, b]))
        assert ping(pa, "10.0.0.3")
        assert fetch(outside, "http://10.98.0.1:8080/")
    finally:
        server.stop()

    # Without our tables our rules go; dockerd's chain and its rule stay.
    asyncio.run(dataplane.release(a.id))
    asyncio.run(dataplane.release(b.id))
    assert chain(host) == ["-N DOCKER-USER", "-A DOCKER-USER -j RETURN"]


def test_without_dockerd_nothing_is_added(dataplane: HostNetwork, host: Host) -> None:
    asyncio.run(dataplane.attach(instance(port(NET, "10.0.0.2"))))
    assert host.run("iptables", "-w", "-S", "DOCKER-USER", check=False).returncode != 0
    assert "table ip filter" not in host.nft_tables()  # looking for the chain made nothing either
