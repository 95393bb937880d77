"""Two real agents (``atoll.agent.agent.Agent``) in one process, each running a host namespace, against one
controller (real services, SQLite): an overlay network spans both, instances talk across with the
addresses IPAM gave them, the controller nudges the other host on every change, and removing leaves
nothing. Placement across hosts is issue 6: here a registry whose ``pick`` the test steers stands in
for the scheduler. The instances are created, not started: their network namespace is wired at
create time and traffic is probed from inside it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from atoll.agent.agent import Agent, AgentConfig
from atoll.agent.images.starter import busybox_rootfs_tar
from atoll.agent.net.names import Names
from atoll.agent.net.overlay import vxlan_name
from atoll.model.errors import InvalidInput
from atoll.model.ports import HostAgent
from atoll.node import STARTER_CONFIG
from atoll.schemas import InstanceCreate, InstanceNetwork, NetworkCreate, SubnetSpec
from atoll.services import images, instances, networks, placement
from atoll.services.context import AgentRegistry, Controller
from atoll.services.control import LocalControlPlane
from atoll.services.hosts import register_host
from atoll.store.db import open_database
from tests.prefix import NET_PREFIX, NFT_TABLE, RUN_PREFIX

from .helpers import Host, ping
from .underlay import UNDERLAY, underlay_hosts

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SteeredRegistry(AgentRegistry):
    """Connected agents, with new work going to ``target`` (the scheduler's job, issue 6)."""

    target = ""

    def pick(self) -> HostAgent:
        return self.get(self.target) if self.target else super().pick()


@dataclass
class Cluster:
    ctl: Controller
    registry: SteeredRegistry
    agents: dict[str, Agent]
    hosts: dict[str, Host]

    async def create_on(self, host_id: str, network: str) -> str:
        self.registry.target = host_id
        inst = await instances.create(
            self.ctl,
            project="default",
            request=InstanceCreate(image="busybox", networks=[InstanceNetwork(network=network)]),
        )
        return inst.id

    def netns(self, host_id: str, instance_id: str) -> Path:
        return self.agents[host_id].config.run_dir / "netns" / instance_id

    def ours(self, host_id: str) -> set[str]:
        return {n for n in self.hosts[host_id].links() if n.startswith(NET_PREFIX)}


@pytest.fixture
def pair() -> Iterator[tuple[Host, Host]]:
    with underlay_hosts() as hosts:
        yield hosts


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    yield path.read_bytes()


@pytest.fixture
async def cluster(
    tmp_path: Path, pair: tuple[Host, Host], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Cluster]:
    registry = SteeredRegistry()
    # The test decides where each instance runs: placement follows the registry's target.
    monkeypatch.setattr(placement, "choose_host", lambda ctl, s, spec: registry.target)
    ctl = Controller(sessions=open_database(f"sqlite:///{tmp_path / 'atoll.db'}"), agents=registry)
    agents: dict[str, Agent] = {}
    hosts: dict[str, Host] = {}
    tar = tmp_path / "rootfs.tar"
    busybox_rootfs_tar(tar)
    for tag, host in zip("ab", pair, strict=True):
        host_id = f"host-{tag}"
        config = AgentConfig(
            host_id=host_id,
            data_dir=tmp_path / tag / "data",
            run_dir=tmp_path / tag / "run",
            cgroup_parent=f"{RUN_PREFIX}-{tag}{secrets.token_hex(2)}",
            reconcile_interval=3600,  # the test drives reconciles itself
            net_prefix=NET_PREFIX,
            nft_table=NFT_TABLE,
            host_netns=host.path,  # underlay address: found, not configured
        )
        agent = await Agent.open(config, LocalControlPlane(ctl))
        register_host(
            ctl, agent, name=host_id, runtime=agent.runtime_name, cgroup_version=agent.cgroup_version
        )
        await agent.reconcile()  # reports the host's networks and underlay address
        registry.target = host_id
        await images.build_image(
            ctl,
            project="default",
            chunks=_chunks(tar),
            tag="busybox:latest",
            config=STARTER_CONFIG,
            public=True,
        )
        agents[host_id], hosts[host_id] = agent, host
    try:
        yield Cluster(ctl, registry, agents, hosts)
    finally:
        for agent in agents.values():
            await agent.close()


async def test_two_agents_one_overlay(cluster: Cluster) -> None:
    ctl = cluster.ctl
    web = networks.create_network(
        ctl, project="default", request=NetworkCreate(name="web", subnets=[SubnetSpec(cidr="10.50.0.0/24")])
    )
    assert web.type == "overlay" and web.mtu == 1450  # the veth underlay's 1500 minus 50
    x = await cluster.create_on("host-a", "web")
    y = await cluster.create_on("host-b", "web")  # host-a hears of y through the controller's nudge
    px, py = cluster.netns("host-a", x), cluster.netns("host-b", y)
    assert ping(px, "10.50.0.3") and ping(py, "10.50.0.2")
    vx = vxlan_name(Names(NET_PREFIX, NFT_TABLE), web.id)
    assert f"local {UNDERLAY[0]}" in cluster.hosts["host-a"].run("ip", "-d", "link", "show", vx).stdout

    # The hosts' own networks are off limits, and the error says which host and interface has it.
    with pytest.raises(
        InvalidInput, match=r"subnets\[0\]\.cidr: 192\.168\.77\.0/25 overlaps 192\.168\.77\.0/24 "
    ):
        networks.create_network(
            ctl,
            project="default",
            request=NetworkCreate(name="bad", subnets=[SubnetSpec(cidr="192.168.77.0/25")]),
        )

    # A restarted agent rebuilds nothing twice and keeps traffic flowing.
    old = cluster.agents["host-a"]
    await old.close()
    fresh = await Agent.open(old.config, LocalControlPlane(ctl))
    cluster.agents["host-a"] = fresh
    register_host(ctl, fresh, name="host-a", runtime=fresh.runtime_name, cgroup_version=fresh.cgroup_version)
    await fresh.reconcile()
    assert ping(px, "10.50.0.3")

    # Removing y: host-b drops the network, host-a (nudged) stops sending to host-b: with no peer
    # left, its VXLAN device goes (the bridge and x's veth stay).
    await instances.remove(ctl, project="default", ref=y, force=True)
    await cluster.agents["host-b"].settle()  # links go in the background after the removal
    assert cluster.ours("host-b") == set()
    assert vx not in cluster.ours("host-a") and cluster.ours("host-a")
    assert ping(px, "10.50.0.2")  # x itself is untouched
    await instances.remove(ctl, project="default", ref=x, force=True)
    await cluster.agents["host-a"].settle()
    assert cluster.ours("host-a") == set()
    await asyncio.gather(*(a.reconcile() for a in cluster.agents.values()))
    assert cluster.ours("host-a") == cluster.ours("host-b") == set()
