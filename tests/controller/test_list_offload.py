"""A big instance list is built off the event loop (atoll/api/offload.py): a cheap request sent while it
is being built is answered first, and the list's answer is byte for byte what FastAPI made of the same
``list[Instance]`` on the loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, inspect

from atoll.api.docker.app import create_docker_server
from atoll.api.docker.views import summary
from atoll.api.offload import dumps_list, json_list
from atoll.api.routes.instances import INSTANCE_LIST
from atoll.schemas import Instance
from atoll.services import instances, networks
from atoll.services.context import Controller
from atoll.store.models import InstanceRow

from .factories import P, create_instance, import_image

pytestmark = pytest.mark.anyio

ROWS = 6000
"""Enough for the list to take a good fraction of a second even on an idle machine."""


async def many_instances(client: httpx.AsyncClient, ctl: Controller, count: int) -> dict[str, Any]:
    """One instance made through the API, and ``count`` copies of its row inserted through the store."""
    await import_image(client, 1, tags=["busybox:latest"], cmd=["sh"])
    first = await create_instance(client, labels={"app": "web", "note": "çà ✓"})
    with ctl.sessions.begin() as s:
        row = s.get(InstanceRow, first["id"])
        assert row is not None
        values = {attr.key: getattr(row, attr.key) for attr in inspect(InstanceRow).column_attrs}
        copies = []
        for i in range(count):
            copy = dict(
                values, id=secrets.token_hex(32), name=f"copy-{i}", created_at=f"{row.created_at}{i:06d}"
            )
            copies.append(copy)
        s.execute(insert(InstanceRow), copies)
    return first


@contextlib.asynccontextmanager
async def docker_client(ctl: Controller, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the Docker API served by ``ctl`` on a socket in ``tmp_path``, on this loop."""
    server = create_docker_server(ctl)
    sock = tmp_path / "docker.sock"
    await server.listen(f"unix://{sock}")
    try:
        transport = httpx.AsyncHTTPTransport(uds=str(sock))
        async with httpx.AsyncClient(transport=transport, base_url="http://docker") as docker:
            yield docker
    finally:
        await server.close()


@dataclasses.dataclass
class Ticker:
    """The loop's turns as a task that sleeps ``every`` seconds sees them: how many, and the most CPU the
    loop's thread spent between two (``time.thread_time``)."""

    every: float
    ticks: int = 0
    worst: float = 0.0

    async def run(self) -> None:
        last = time.thread_time()
        while True:
            await asyncio.sleep(self.every)
            now = time.thread_time()
            self.ticks += 1
            self.worst, last = max(self.worst, now - last), now


@contextlib.asynccontextmanager
async def ticking(every: float) -> AsyncIterator[Ticker]:
    """A ``Ticker`` running on this loop for the length of the block."""
    ticker = Ticker(every)
    task = asyncio.create_task(ticker.run())
    try:
        yield ticker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_cheap_request_is_answered_while_a_big_list_is_built(
    client: httpx.AsyncClient, ctl: Controller
) -> None:
    first = await many_instances(client, ctl, ROWS)
    done: list[str] = []

    async def big_list() -> httpx.Response:
        resp = await client.get(f"{P}/instances", params={"all": "true"})
        done.append("list")
        return resp

    async def show() -> httpx.Response:
        await asyncio.sleep(0.1)  # the list is under way (with the list on the loop, this waits for it)
        resp = await client.get(f"{P}/instances/{first['id']}")
        done.append("show")
        return resp

    listed, shown = await asyncio.gather(big_list(), show())
    assert listed.status_code == 200 and shown.status_code == 200
    assert len(listed.json()) == ROWS + 1
    assert done == ["show", "list"]


async def test_the_list_is_the_answer_fastapi_made_on_the_loop(
    client: httpx.AsyncClient, ctl: Controller
) -> None:
    await many_instances(client, ctl, 50)
    # The route as it was: the service's list returned to FastAPI as a ``list[Instance]``.
    before = FastAPI()

    @before.get("/list")
    async def old_route(all: bool = False, label: list[str] | None = None) -> list[Instance]:
        return instances.list_instances(ctl, project="default", all=all, label=label)

    old = httpx.AsyncClient(transport=httpx.ASGITransport(app=before), base_url="http://before")
    async with old:
        for params in ({"all": "true"}, {}, {"all": "true", "label": "app=web"}):
            new_answer = await client.get(f"{P}/instances", params=params)
            old_answer = await old.get("/list", params=params)
            assert new_answer.status_code == old_answer.status_code == 200
            assert new_answer.headers["content-type"] == old_answer.headers["content-type"]
            assert new_answer.content == old_answer.content
    assert "çà ✓" in new_answer.text
    # Made in batches, the same bytes as in one call, whatever the size of the batches.
    listed = instances.list_instances(ctl, project="default", all=True)
    whole = INSTANCE_LIST.dump_json(listed, by_alias=True)
    for size in (1, 7, 50, 51, 500):
        batches = list(instances.instance_batches(ctl, project="default", all=True, batch=size))
        assert len(batches) == -(-len(listed) // size)
        assert json_list(INSTANCE_LIST, batches) == whole
    assert json_list(INSTANCE_LIST, []) == json_list(INSTANCE_LIST, [[]]) == INSTANCE_LIST.dump_json([])
    bad = await client.get(f"{P}/instances", params={"status": "sleeping"})
    assert bad.status_code == 400 and "status" in bad.json()["error"]["message"]


async def test_docker_ps_is_built_off_the_loop_too(
    client: httpx.AsyncClient, ctl: Controller, tmp_path: Path
) -> None:
    """Here the client shares the server's loop, and a multi-megabyte answer takes it many turns to read:
    so what is counted is the loop's turns (a ticker's) between the request and its answer's head."""
    await many_instances(client, ctl, ROWS)
    async with (
        docker_client(ctl, tmp_path) as docker,
        ticking(0.01) as ticker,
        docker.stream("GET", "/v1.41/containers/json", params={"all": "1"}) as resp,
    ):
        during = ticker.ticks  # from the request's sending to its answer's head: the time it was built in
        body = await resp.aread()
    assert resp.status_code == 200 and len(json.loads(body)) == ROWS + 1
    assert during >= 10, f"the loop turned {during} times while the list was built"


DOCKER_ROWS = 15_000
"""Enough for one ``json.dumps`` of the Docker list to take ~80 ms of CPU: far above what the loop's thread
does between two turns while the list is made elsewhere (a few milliseconds)."""


async def test_docker_ps_does_not_stall_the_loop(
    client: httpx.AsyncClient, ctl: Controller, tmp_path: Path
) -> None:
    """The Docker list is read, viewed and written as JSON off the loop: from the request to the
    answer's end, the most CPU the loop's thread spends between two turns of a ticker stays under a
    quarter of what one ``json.dumps`` of the whole answer takes, the stall it caused when it was
    written on the loop (what is left, ~7 ms, is copying and reading the
    20 MB answer). The answer is byte for byte that ``json.dumps``.

    CPU time, not wall time: on 2 shared cores the loop's thread may wait for a CPU (or for the GIL
    held by a descheduled thread) for as long as a list would have stalled it, a wait that is the
    machine's; work done on the loop is counted whatever the load. The collector is paused meanwhile:
    a full collection stops every thread for as long as it takes to walk the process's objects
    (~70 ms in a pytest process of 190,000), whoever's allocation set it off; that is the heap's cost,
    not work of the list's on the loop, and bench/list_block.py measures it with the rest."""
    await many_instances(client, ctl, DOCKER_ROWS)
    names = {n.id: n.name for n in networks.list_networks(ctl, project="default")}
    rows = [summary(i, names) for i in instances.list_instances(ctl, project="default", all=True)]
    on_loop = 1e9
    for _ in range(2):  # the second warm (the first also grows the heap)
        began = time.thread_time()
        whole = json.dumps(rows).encode() + b"\n"
        on_loop = min(on_loop, time.thread_time() - began)
    del rows
    gc.collect()  # the garbage of the setup above, not the list's
    async with docker_client(ctl, tmp_path) as docker:
        await docker.get("/_ping")  # connected before the ticker starts
        async with ticking(0.001) as ticker:
            gc.disable()
            try:
                resp = await docker.get("/v1.41/containers/json", params={"all": "1"})
                await asyncio.sleep(0.01)  # a last turn of the ticker's
                stall = ticker.worst
            finally:
                gc.enable()
    assert resp.status_code == 200 and resp.content == whole
    print(f"json.dumps on the loop: {on_loop * 1000:.1f} ms CPU; the loop at once: {stall * 1000:.1f} ms")
    assert stall < on_loop / 4, (
        f"the loop ran {stall:.3f} s at once (json.dumps of the answer: {on_loop:.3f} s)"
    )


def test_dumps_list_is_json_dumps() -> None:
    items: list[Any] = [{"a": [1, 2.5, None, True], "b": {"c": 'çà ✓ \u2028 "q"'}}, "x", [], {}, 0]
    for n in range(len(items) + 1):
        assert dumps_list(iter(items[:n])) == json.dumps(items[:n]).encode()
