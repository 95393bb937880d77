"""What only PostgreSQL can show: two controllers writing one database at the same time.

Each controller has its own engine (its own connections), and each runs in a thread with its own event
loop, so their placement transactions really overlap in the server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import delete, text
from sqlalchemy.orm import Session, sessionmaker

from atoll.api.app import create_app
from atoll.services.context import AgentRegistry, Controller
from atoll.services.hosts import register_host
from atoll.store.cluster import ClusterHostRow
from atoll.store.db import open_database
from atoll.store.models import ImageRow, InstanceRow

from .factories import P, import_image
from .fakes import FakeAgent

GIB = 1 << 30


@pytest.fixture
def two(pg_url: str) -> Iterator[tuple[Controller, Controller, FakeAgent]]:
    agent = FakeAgent()
    first = Controller(sessions=open_database(pg_url), agents=AgentRegistry(), stop_grace=1.0)
    second = Controller(sessions=open_database(pg_url), agents=AgentRegistry(), stop_grace=1.0)
    register_host(first, agent, name="small", runtime="fake", cgroup_version=2)
    second.agents.add(agent)
    with first.sessions.begin() as s:
        s.add(
            ClusterHostRow(
                host_id=agent.host_id,
                address="127.0.0.1:1",
                cert_serial="1",
                joined_at="2026-01-01T00:00:00Z",
                heartbeat_at=time.time(),
                drained=False,
                cpu_millis=4000,
                memory_bytes=3 * GIB // 2,
                disk_bytes=100 * GIB,
                pids=10000,
                used={},
                labels={},
            )
        )
    yield first, second, agent
    for ctl in (first, second):
        ctl.sessions.kw["bind"].dispose()


ROUNDS = 30


def _race(ctl: Controller, image: str, statuses: list[list[int]], gate: threading.Barrier) -> None:
    """Each round: wait for the other controller, both create at once, the first thread empties the host."""

    async def main() -> None:
        transport = httpx.ASGITransport(app=create_app(ctl))
        async with httpx.AsyncClient(transport=transport, base_url="http://atoll") as client:
            body = {"image": image, "resources": {"memory": GIB}}
            for n in range(ROUNDS):
                gate.wait()
                statuses[n].append((await client.post(f"{P}/instances", json=body)).status_code)
                if gate.wait() == 0:
                    with ctl.sessions.begin() as s:
                        s.execute(delete(InstanceRow))
                gate.wait()

    asyncio.run(main())


@pytest.mark.anyio
async def test_two_controllers_never_over_book_one_host(
    two: tuple[Controller, Controller, FakeAgent],
) -> None:
    """Thirty rounds: two controllers create a 1 GiB instance at the same moment on a host with room for
    one (1.5 GiB). Each round exactly one create succeeds; without the placement lock both often do."""
    first, second, _agent = two
    transport = httpx.ASGITransport(app=create_app(first))
    async with httpx.AsyncClient(transport=transport, base_url="http://atoll") as client:
        # One image per controller: creates from one image also update its row (``last_used``), whose
        # row lock would serialise them by accident and hide a missing placement lock.
        images = [(await import_image(client, n))["id"] for n in (1, 2)]
    statuses: list[list[int]] = [[] for _ in range(ROUNDS)]
    gate = threading.Barrier(2, timeout=60)
    threads = [
        threading.Thread(target=_race, args=(ctl, image, statuses, gate))
        for ctl, image in zip((first, second), images, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert [sorted(round_) for round_ in statuses] == [[201, 409]] * ROUNDS


def test_big_image_sizes_fit(pg_url: str) -> None:
    """PostgreSQL's INTEGER is 32-bit: image sizes are BIGINT there (migration 0013)."""
    sessions: sessionmaker[Session] = open_database(pg_url)
    try:
        with sessions.begin() as s:
            assert s.connection().dialect.name == "postgresql"
            s.add(
                ImageRow(
                    project="default",
                    id="sha256:" + "a" * 64,
                    public=False,
                    size=5 * GIB,
                    created="2026-01-01T00:00:00Z",
                    architecture="amd64",
                    os="linux",
                    layers=[],
                    config={},
                    created_at="2026-01-01T00:00:00Z",
                )
            )
        with sessions() as s:
            assert s.scalar(text("SELECT size FROM images")) == 5 * GIB
    finally:
        sessions.kw["bind"].dispose()
