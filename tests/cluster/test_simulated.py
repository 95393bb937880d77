"""Simulated hosts against a real controller (`atoll serve` as its own process): 20 hosts join by token
over the real protocol, behind one SNI listener, and 200 instances are placed, started, stopped and
removed through the native API. Small on purpose; bench/cluster_load.py runs the same at 1,000 hosts."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from atoll.agent.simulated.fleet import GIB, Fleet
from atoll.model.cluster import HostResources
from atoll.schemas import InstanceCreate, ResourcesWire
from atoll.wire import pki

from .procs import MultiHost

pytestmark = pytest.mark.anyio

HOSTS = 20
INSTANCES = 200
CAPACITY = HostResources(cpu_millis=4000, memory_bytes=8 * GIB, disk_bytes=100 * GIB, pids=100_000)


class Controller(MultiHost):
    """Heartbeats every second, down after 20 s: twenty hosts joining at once on a loaded 2-core
    machine must not be taken for dead."""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "ATOLL_HEARTBEAT_TIMEOUT": "20"}


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[tuple[MultiHost, Fleet]]:
    c = Controller(base=tmp_path)
    fleet = Fleet(tmp_path / "sim", heartbeat_interval=1.0, capacity=CAPACITY)
    try:
        await asyncio.to_thread(c.start_controller)
        api = c.api()
        tokens = [api.create_join_token(60).token for _ in range(HOSTS)]
        await fleet.add_hosts(tokens)
        deadline = time.monotonic() + 60
        while not all(h.images for h in fleet.hosts.values()):  # the starter image, built on each host
            assert time.monotonic() < deadline, (
                f"starter image missing: {c.controller_log.read_text()[-2000:]}"
            )
            await asyncio.sleep(0.1)
        yield c, fleet
    finally:
        await asyncio.to_thread(c.teardown)
        await fleet.close()


async def test_twenty_simulated_hosts_take_two_hundred_instances(sim: tuple[MultiHost, Fleet]) -> None:
    c, fleet = sim
    api = c.api()
    hosts = {h.id: h for h in api.cluster_hosts()}
    assert set(hosts) == set(fleet.hosts)
    assert all(h.state == "ready" and h.capacity is not None for h in hosts.values())
    assert all(h.capacity.memory_bytes == 8 * GIB for h in hosts.values() if h.capacity)

    slots = asyncio.Semaphore(8)

    async def create(i: int) -> str:
        spec = InstanceCreate(
            image="busybox",
            name=f"load-{i}",
            command=["sleep", "1"],
            resources=ResourcesWire(memory=512 << 20),
        )
        async with slots:
            return (await asyncio.to_thread(api.create_instance, spec)).id

    ids = await asyncio.gather(*(create(i) for i in range(INSTANCES)))
    placed = Counter(host for h in fleet.hosts.values() for host in [h.host_id] * len(h.specs))
    assert sum(placed.values()) == INSTANCES, "every instance is a record on exactly one simulated host"
    # Binpack: 16 x 512 MiB fill an 8 GiB host, so 200 instances need 13 hosts, and none is over-booked.
    assert len(placed) == 13 and max(placed.values()) == 16
    for detail in api.cluster_hosts():
        assert detail.capacity is not None and detail.allocated.memory_bytes <= detail.capacity.memory_bytes

    # Hard anti-affinity across simulated hosts.
    db = []
    for i in range(3):
        spec = InstanceCreate(image="busybox", name=f"db-{i}", env=["affinity:container!=db-*"])
        db.append((await asyncio.to_thread(api.create_instance, spec)).host)
    assert len(set(db)) == 3

    # Lifecycle through the controller reaches the right simulated host.
    for ref in ids[:10]:
        await asyncio.to_thread(api.start_instance, ref)
    assert sum(len(h.running) for h in fleet.hosts.values()) == 10
    assert all(i.status == "running" for i in api.instances())
    await asyncio.to_thread(api.stop_instance, ids[0])
    assert api.inspect_instance(ids[0]).status == "exited"
    for ref in [*ids, *(f"db-{i}" for i in range(3))]:
        await asyncio.to_thread(api.remove_instance, ref, force=True)
    assert all(not h.specs and not h.running for h in fleet.hosts.values())
    assert api.instances(all=True) == []
    assert fleet.stats.heartbeat_errors == 0


async def test_each_simulated_host_answers_with_its_own_certificate(sim: tuple[MultiHost, Fleet]) -> None:
    """The shared listener picks the certificate by SNI; a name it does not serve is refused."""
    _, fleet = sim
    a, b = list(fleet.hosts)[:2]
    port = int(fleet.address.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=str(fleet.base / "sim-0000" / "cluster" / "ca.crt"))
    for host_id in (a, b):
        _reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname=pki.host_dns_name(host_id)
        )
        cert = writer.get_extra_info("peercert")
        assert pki.peer_common_name(cert) == host_id
        writer.close()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=pki.host_dns_name("nobody"))
    # A client without the controller's certificate gets nothing from any host.
    with pytest.raises(httpx.HTTPError):
        async with httpx.AsyncClient(verify=ctx) as client:
            await client.post(
                f"https://{fleet.address}/rpc/image_present",
                json={"image_id": "x"},
                extensions={"sni_hostname": pki.host_dns_name(a)},
            )
