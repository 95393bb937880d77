"""Moves between hosts over the real wire with fake hosts (``conftest.InProcessCluster``): an evacuation
streams the writable layer from host to host through the controller; a down host's restartable
instance fails over; a returning host is ``fencing`` until its agent dropped the moved copy, and goes
back to ``down`` if the fence fails."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest

from atoll.model.errors import RuntimeFailure
from atoll.services import failover, membership
from tests.controller.factories import P, create_instance, import_image

from .conftest import InProcessCluster, report

pytestmark = pytest.mark.anyio


async def _state(client: httpx.AsyncClient, host_id: str) -> str:
    state: str = (await client.get(f"/v1/cluster/hosts/{host_id}")).json()["state"]
    return state


async def _run_on(client: httpx.AsyncClient, drained: str, **body: Any) -> str:
    await client.post(f"/v1/cluster/hosts/{drained}/drain")
    try:
        inst = await create_instance(client, **body)
    finally:
        await client.post(f"/v1/cluster/hosts/{drained}/undrain")
    assert (await client.post(f"{P}/instances/{inst['id']}/start")).status_code == 200
    instance_id: str = inst["id"]
    return instance_id


async def test_evacuate_streams_the_layer_between_hosts(
    cluster: InProcessCluster, client: httpx.AsyncClient
) -> None:
    one, two = await cluster.add_host("one"), await cluster.add_host("two")
    await import_image(client, 1)
    web = await _run_on(client, two.host_id, name="web")
    one.fake.files[web] = {"/state.txt": b"kept"}
    resp = await client.post(f"/v1/cluster/hosts/{one.host_id}/evacuate", json={})
    assert resp.status_code == 200, resp.text
    moved = resp.json()["moved"]
    assert [(m["name"], m["target"], m["generation"]) for m in moved] == [("web", two.host_id, 1)]
    assert moved[0]["downtime_ms"] > 0 and set(moved[0]["phases_ms"]) >= {"stop", "delta", "start on target"}
    assert two.fake.files[web] == {"/state.txt": b"kept"} and web in two.fake.running
    assert web not in one.fake.specs and web not in one.fake.running
    (pre, since0), (delta, since1) = one.fake.called("export_writable")
    assert pre == delta == web and since0 == 0.0 and since1 > 0, "a full copy, then changes since it began"
    assert await _state(client, one.host_id) == "draining"
    assert (await client.get(f"{P}/instances/web")).json()["host"] == two.host_id


async def test_failover_then_fencing(cluster: InProcessCluster, client: httpx.AsyncClient) -> None:
    ctl = cluster.ctl
    assert ctl.cluster is not None
    ctl.cluster = dataclasses.replace(ctl.cluster, on_host_returned=lambda h: failover.host_returns(ctl, h))
    one, two = await cluster.add_host("one"), await cluster.add_host("two")
    await import_image(client, 1)
    two.fake.images.update(one.fake.images)  # the dead host cannot give its copy
    keep = await _run_on(client, two.host_id, name="keep")
    moved = await _run_on(client, two.host_id, name="moved", restart_policy={"name": "always"})

    await asyncio.sleep(0.6)
    await two.control.heartbeat(two.host_id, report(f"127.0.0.1:{two.server.config.port}"))
    assert membership.mark_silent_hosts_down(ctl) == [one.host_id]
    assert await failover.fail_over(ctl, one.host_id) == [moved]
    after = (await client.get(f"{P}/instances/moved")).json()
    assert (after["host"], after["status"]) == (two.host_id, "running")
    assert (await client.get(f"{P}/instances/keep")).json()["host"] == one.host_id, "no restart policy"

    # Back: fencing until the agent has dropped the moved copy, then ready.
    await one.control.heartbeat(one.host_id, report(f"127.0.0.1:{one.server.config.port}"))
    assert await _state(client, one.host_id) == "fencing"
    await asyncio.gather(*list(failover._tasks))
    assert one.fake.called("fence") == [[keep]]
    assert moved not in one.fake.specs and keep in one.fake.specs
    assert await _state(client, one.host_id) == "ready"

    # A fence that fails leaves the host down; its next heartbeat tries again.
    await asyncio.sleep(0.6)
    await two.control.heartbeat(two.host_id, report(f"127.0.0.1:{two.server.config.port}"))
    assert membership.mark_silent_hosts_down(ctl) == [one.host_id]
    one.fake.fail["fence"] = RuntimeFailure("boom")
    await one.control.heartbeat(one.host_id, report(f"127.0.0.1:{one.server.config.port}"))
    await asyncio.gather(*list(failover._tasks))
    assert await _state(client, one.host_id) == "down"
    await one.control.heartbeat(one.host_id, report(f"127.0.0.1:{one.server.config.port}"))
    await asyncio.gather(*list(failover._tasks))
    assert await _state(client, one.host_id) == "ready"
