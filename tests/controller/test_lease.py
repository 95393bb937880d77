"""The controller lease (services/lease.py) on a real PostgreSQL server, and the agent's failover between
controllers (agent/cluster/failover.py)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from atoll.agent.cluster.failover import FailoverControlPlane, refresh
from atoll.agent.cluster.membership import Membership
from atoll.model.errors import NotFound
from atoll.services.lease import Lease
from atoll.store.postgres import LEADER_LOCK
from atoll.wire.client import Unreachable
from tests.pgcluster import PrivateServer

pytestmark = pytest.mark.anyio
INTERVAL = 0.1


def _ticker(ran: list[str], name: str) -> Any:
    async def tick() -> None:
        while True:
            ran.append(name)
            await asyncio.sleep(0.02)

    return lambda: [tick()]


async def _until(condition: Any, timeout: float = 10) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition not met in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_one_holder_and_take_over_when_it_dies(pg_url: str) -> None:
    ran: list[str] = []
    a, b = Lease(pg_url, interval=INTERVAL), Lease(pg_url, interval=INTERVAL)
    run_a = asyncio.create_task(a.run(_ticker(ran, "a")))
    await _until(lambda: a.held)
    run_b = asyncio.create_task(b.run(_ticker(ran, "b")))
    try:
        await asyncio.sleep(10 * INTERVAL)
        assert a.held and not b.held
        assert set(ran) == {"a"}
        # The holder goes away (its session ends, as when the process is killed): b takes over.
        run_a.cancel()
        await asyncio.gather(run_a, return_exceptions=True)
        ran.clear()
        took = await _until(lambda: b.held)
        assert took < 3 * INTERVAL + 1
        await asyncio.sleep(3 * INTERVAL)
        assert set(ran) == {"b"}
    finally:
        run_b.cancel()
        await asyncio.gather(run_a, run_b, return_exceptions=True)


async def test_a_holder_whose_session_is_cut_stops_its_loops(pg_url: str, pg_server: PrivateServer) -> None:
    ran: list[str] = []
    a, b = Lease(pg_url, interval=INTERVAL), Lease(pg_url, interval=INTERVAL)
    run_a = asyncio.create_task(a.run(_ticker(ran, "a")))
    await _until(lambda: a.held)
    run_b = asyncio.create_task(b.run(_ticker(ran, "b")))
    try:
        await asyncio.sleep(3 * INTERVAL)
        with pg_server.admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND ((classid::bigint << 32) | objid::bigint) = %s",
                (LEADER_LOCK,),
            )
        await _until(lambda: b.held)
        await _until(lambda: not a.held)
        await asyncio.sleep(3 * INTERVAL)
        ran.clear()
        await asyncio.sleep(3 * INTERVAL)
        assert set(ran) == {"b"}, "the cut holder stopped its loops and did not win the lease back"
        assert not a.held
    finally:
        run_a.cancel()
        run_b.cancel()
        await asyncio.gather(run_a, run_b, return_exceptions=True)


async def test_on_sqlite_the_lease_is_always_held(tmp_path: Path) -> None:
    ran: list[str] = []
    lease = Lease(f"sqlite:///{tmp_path / 'atoll.db'}")
    assert not lease.shared
    task = asyncio.create_task(lease.run(_ticker(ran, "only")))
    await _until(lambda: bool(ran))
    assert lease.held
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class FakePlane:
    def __init__(self, address: str, up: bool) -> None:
        self.address, self.up, self.calls = address, up, 0

    async def heartbeat(self, host_id: str, report: object) -> None:
        self.calls += 1
        if not self.up:
            raise Unreachable(f"{self.address}: cannot reach the peer")

    async def assignments(self, host_id: str) -> list[object]:
        raise NotFound("host_id: not a member")


async def test_failover_moves_to_the_next_controller_and_stays() -> None:
    planes = {"a:1": FakePlane("a:1", up=False), "b:1": FakePlane("b:1", up=True)}
    failover = FailoverControlPlane(["a:1", "b:1"], lambda address: planes[address])  # type: ignore[arg-type,return-value]
    await failover.heartbeat("h", None)
    assert failover.current == "b:1" and planes["b:1"].calls == 1
    await failover.heartbeat("h", None)
    assert planes["a:1"].calls == 1, "the current controller is tried first"
    # A domain error is an answer, not a reason to fail over.
    with pytest.raises(NotFound):
        await failover.assignments("h")
    assert failover.current == "b:1"
    planes["b:1"].up = False
    with pytest.raises(Unreachable):
        await failover.heartbeat("h", None)
    failover.set_addresses(["c:1", "b:1"])
    assert failover.addresses == ["b:1", "c:1"], "the current one stays first"
    failover.skip()
    assert failover.current == "c:1"


class ListingPlane(FakePlane):
    def __init__(self, address: str, listed: list[str]) -> None:
        super().__init__(address, up=True)
        self.listed = listed

    async def controllers(self, host_id: str) -> list[str]:
        return self.listed


async def test_an_expired_controller_drops_out_of_the_agents_list(tmp_path: Path) -> None:
    """The controllers' list is the database's (expired ones are left out): the agent keeps exactly it,
    in memory and in membership.json, rather than keeping the retired one at the end."""
    (tmp_path / "cluster").mkdir()
    planes = {"a:1": ListingPlane("a:1", ["a:1", "b:1"]), "b:1": ListingPlane("b:1", ["a:1", "b:1"])}
    failover = FailoverControlPlane(["a:1", "b:1"], lambda address: planes[address])  # type: ignore[arg-type,return-value]
    joined = Membership(host_id="h", controller="a:1", listen="x:1", advertise="x:1")
    joined = await refresh(failover, tmp_path, joined, "h")
    assert failover.addresses == ["a:1", "b:1"] and joined.controllers == ["a:1", "b:1"]
    planes["a:1"].listed = ["b:1"]  # b expired a's row: a is retired
    joined = await refresh(failover, tmp_path, joined, "h")
    assert failover.addresses == ["b:1"] and failover.current == "b:1"
    assert json.loads((tmp_path / "cluster" / "membership.json").read_text())["controllers"] == ["b:1"]
