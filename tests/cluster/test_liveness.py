"""Cheap heartbeats and the membership cache (services/liveness.py), over the real wire.

A beat that changes nothing must touch no row and ask the database nothing; host-down detection must
still see it (pending beats are flushed first), across a controller restart, and with two controllers on
one database; a removed host is refused at once by the controller that removed it, and by the others
after their next ``follow_hosts``."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from atoll.model.cluster import HostResources
from atoll.model.errors import Forbidden
from atoll.services import controllers, membership
from atoll.services.context import AgentRegistry, Controller
from atoll.services.liveness import Liveness, MemberCache, flush_forever
from atoll.store.cluster import ClusterHostRow
from atoll.store.models import HostRow

from .conftest import GIB, Host, InProcessCluster, report

pytestmark = pytest.mark.anyio


@contextmanager
def statements(ctl: Controller) -> Iterator[list[str]]:
    """Every SQL statement the controller's engine runs inside the block."""
    seen: list[str] = []
    engine = ctl.sessions.kw["bind"]

    def record(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        seen.append(sql)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def stored_beat(ctl: Controller, host_id: str) -> tuple[float, str]:
    with ctl.sessions() as s:
        member, host = s.get(ClusterHostRow, host_id), s.get(HostRow, host_id)
        assert member is not None and host is not None
        return member.heartbeat_at, host.state


async def beat(host: Host, **changes: Any) -> None:
    address = f"127.0.0.1:{host.server.config.port}"
    await host.control.heartbeat(host.host_id, dataclasses.replace(report(address, name="h"), **changes))


def second_controller(ctl: Controller) -> Controller:
    """Another controller process on the same database: its own connections and caches."""
    return dataclasses.replace(ctl, agents=AgentRegistry(), members=MemberCache(), liveness=Liveness())


async def test_an_unchanged_beat_touches_no_row_and_asks_nothing(cluster: InProcessCluster) -> None:
    ctl = cluster.ctl
    ctl.liveness.flush_interval = 3600.0  # no batch inside the test unless asked
    one = await cluster.add_host("h")  # its first beat took the full path
    await beat(one)
    written, _ = stored_beat(ctl, one.host_id)
    with statements(ctl) as sql:
        for _ in range(5):
            await beat(one)
    assert sql == [], "membership from memory, the beat's time kept for the next batch"
    assert stored_beat(ctl, one.host_id)[0] == written
    assert ctl.liveness.last_beat(one.host_id) is not None and ctl.members.hits >= 5
    # The batch: one UPDATE per table for every pending host, then the time is in the database.
    with statements(ctl) as sql:
        assert ctl.liveness.flush(ctl.sessions) == 1
    assert sum(s.lstrip().upper().startswith("UPDATE") for s in sql) == 2
    assert stored_beat(ctl, one.host_id)[0] > written
    # A changed report is written at once.
    before = stored_beat(ctl, one.host_id)[0]
    await beat(one, used=HostResources(memory_bytes=GIB))
    assert stored_beat(ctl, one.host_id)[0] > before
    with ctl.sessions() as s:
        member = s.get(ClusterHostRow, one.host_id)
        assert member is not None and member.used["memory_bytes"] == GIB


async def test_pending_beats_count_for_host_down_detection(cluster: InProcessCluster) -> None:
    ctl = cluster.ctl  # heartbeat timeout 0.5 s
    ctl.liveness.flush_interval = 3600.0
    one, two = await cluster.add_host("one"), await cluster.add_host("two")
    await beat(one)
    await beat(two)
    await asyncio.sleep(0.6)
    await beat(two)  # pending only: the database still holds a time older than the timeout
    assert ctl.liveness.last_beat(two.host_id) is not None
    assert membership.mark_silent_hosts_down(ctl) == [one.host_id]
    assert stored_beat(ctl, two.host_id)[1] == "ready"
    # The silent host comes back with its next beat, which takes the full path (it is not connected).
    await beat(one)
    assert stored_beat(ctl, one.host_id)[1] == "ready" and one.host_id in ctl.agents


async def test_beats_survive_a_controller_restart(cluster: InProcessCluster) -> None:
    ctl = cluster.ctl
    ctl.liveness.flush_interval = 3600.0
    one = await cluster.add_host("one")
    await beat(one)
    await asyncio.sleep(0.6)
    await beat(one)  # pending in this process
    # The controller stops: its flush loop writes what is pending on the way out.
    loop = asyncio.create_task(flush_forever(ctl.liveness, ctl.sessions))
    await asyncio.sleep(0)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    # A new process on the same database (nothing in memory) sees the last beat, not the one before.
    restarted = second_controller(ctl)
    restarted.agents.add(ctl.agents.get(one.host_id))
    assert membership.mark_silent_hosts_down(restarted) == []
    await asyncio.sleep(0.6)
    assert membership.mark_silent_hosts_down(restarted) == [one.host_id]


async def test_a_host_marked_down_by_another_controller_comes_back(cluster: InProcessCluster) -> None:
    ctl = cluster.ctl
    ctl.liveness.flush_interval = 3600.0
    one = await cluster.add_host("one")
    await beat(one)
    assert ctl.liveness.unchanged(one.host_id, report(f"127.0.0.1:{one.server.config.port}", name="h"))
    # The lease holder (another controller) marks it down while this one still remembers it as ready.
    await asyncio.sleep(0.6)
    assert membership.mark_silent_hosts_down(second_controller(ctl)) == [one.host_id]
    await beat(one)  # cheap here: this controller has not looked yet
    ctl.liveness.flush(ctl.sessions)  # the batch reads back that the host is not ready any more
    await beat(one)  # so this one takes the full path and brings it back
    assert stored_beat(ctl, one.host_id)[1] == "ready"
    # The same through follow_hosts, which every controller runs.
    await asyncio.sleep(0.6)
    assert membership.mark_silent_hosts_down(second_controller(ctl)) == [one.host_id]
    controllers.follow_hosts(ctl)
    assert one.host_id not in ctl.agents
    await beat(one)
    assert stored_beat(ctl, one.host_id)[1] == "ready" and one.host_id in ctl.agents


async def test_removed_hosts_are_refused_despite_the_cache(
    cluster: InProcessCluster, client: httpx.AsyncClient
) -> None:
    ctl = cluster.ctl
    one, two = await cluster.add_host("one"), await cluster.add_host("two")
    await beat(one)
    await beat(two)
    # Removed through this controller: refused from the very next call.
    assert (await client.delete(f"/v1/cluster/hosts/{one.host_id}")).status_code == 204
    with pytest.raises(Forbidden, match="not a member"):
        await beat(one)
    # Removed through another controller: refused once this one has followed the database.
    membership.remove_host(second_controller(ctl), ref=two.host_id)
    controllers.follow_hosts(ctl)
    with pytest.raises(Forbidden, match="not a member"):
        await two.control.assignments(two.host_id)
