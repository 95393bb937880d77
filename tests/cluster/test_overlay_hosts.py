"""One overlay network across two real agents, each in a host namespace of its own (``netns_hosts``):
instances on different hosts ping each other by address and by name (the resolver at 127.0.0.11), over
VXLAN between the hosts' underlay addresses, and keep their addresses across stop and start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from atoll.schemas import InstanceCreate, InstanceNetwork, NetworkCreate, SubnetSpec

from .netns_hosts import NetnsAgent, NetnsCluster, create_on, reaches
from .procs import started


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    yield from started(NetnsCluster(base=tmp_path_factory.mktemp("atoll-test-nshosts")), "alpha", "beta")


def run_on(c: NetnsCluster, agent: NetnsAgent, name: str, network: str) -> str:
    """A running instance on ``agent``'s host."""
    request = InstanceCreate(
        image="busybox", name=name, command=["sleep", "600"], networks=[InstanceNetwork(network=network)]
    )
    return create_on(c, agent, request)


def ip_of(c: NetnsCluster, ref: str) -> str:
    return c.api().inspect_instance(ref).networks[0].ip


def test_overlay_spans_host_namespaces(hosts: NetnsCluster) -> None:
    alpha, beta = hosts.agents
    api = hosts.api()
    net = api.create_network(NetworkCreate(name="span", subnets=[SubnetSpec(cidr="10.61.0.0/24")]))
    try:
        assert net.type == "overlay"
        a = run_on(hosts, alpha, "ping-a", "span")
        b = run_on(hosts, beta, "pong-b", "span")
        ip_a, ip_b = ip_of(hosts, a), ip_of(hosts, b)
        assert reaches(hosts, a, ip_b) and reaches(hosts, b, ip_a)
        assert reaches(hosts, a, "pong-b") and reaches(hosts, b, "ping-a")
        looked_up = hosts.cli("exec", a, "nslookup", "pong-b", "127.0.0.11")
        assert looked_up.returncode == 0 and ip_b in looked_up.stdout, looked_up.stdout + looked_up.stderr
        # The tunnel really runs between the hosts' underlay addresses.
        links = alpha.run("ip", "-d", "link", "show", "type", "vxlan").stdout
        assert f"local {alpha.address}" in links, links
        fdb = alpha.run("bridge", "fdb", "show").stdout
        assert f"dst {beta.address}" in fdb, fdb

        # Stop and start: same addresses, still reachable by name.
        assert hosts.cli("stop", "-t", "1", "pong-b").returncode == 0
        assert hosts.api().inspect_instance(b).status == "exited"
        assert hosts.cli("start", "pong-b").returncode == 0
        assert ip_of(hosts, b) == ip_b
        assert reaches(hosts, a, "pong-b") and reaches(hosts, b, ip_a)
    finally:
        for inst in api.instances(all=True):
            api.remove_instance(inst.id, force=True)
        api.remove_network("span")
    hosts.settle_network()  # links go in the background after a removal
    for agent in hosts.agents:
        assert agent.leftovers() == []
