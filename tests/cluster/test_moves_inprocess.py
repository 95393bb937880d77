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


async def test_volumes_on_failover_and_evacuation_are_reported_on_the_instance(
    cluster: InProcessCluster, client: httpx.AsyncClient
) -> None:
    """Local data stays on the old host. Failover leaves an instance with a volume on its down host and
    says why on the instance, unless its label asks to move it without the data; evacuation with force
    moves it and says what stayed behind. The note goes once the host is back and the instance with it."""
    ctl = cluster.ctl
    assert ctl.cluster is not None
    ctl.cluster = dataclasses.replace(ctl.cluster, on_host_returned=lambda h: failover.host_returns(ctl, h))
    one, two = await cluster.add_host("one"), await cluster.add_host("two")
    await import_image(client, 1)
    two.fake.images.update(one.fake.images)
    always = {"name": "always"}
    db = await _run_on(
        client,
        two.host_id,
        name="db",
        restart_policy=always,
        mounts=[{"source": "dbdata", "destination": "/var/db"}],
    )
    cache = await _run_on(
        client,
        two.host_id,
        name="cache",
        restart_policy=always,
        mounts=[{"source": "cachedata", "destination": "/c"}],
        labels={"atoll.failover": "without-data"},
    )
    assert (await client.get(f"{P}/instances/db")).json()["move_note"] == ""

    await asyncio.sleep(0.6)
    await two.control.heartbeat(two.host_id, report(f"127.0.0.1:{two.server.config.port}", name="two"))
    assert membership.mark_silent_hosts_down(ctl) == [one.host_id]
    assert await failover.fail_over(ctl, one.host_id) == [cache]
    stayed = (await client.get(f"{P}/instances/{db}")).json()
    assert stayed["host"] == one.host_id
    assert stayed["move_note"] == (
        "not failed over from down host one: its data is there: volume 'dbdata' at /var/db; it runs again "
        "when the host returns (the label atoll.failover=without-data fails it over without that data)"
    )
    went = (await client.get(f"{P}/instances/{cache}")).json()
    assert (went["host"], went["status"]) == (two.host_id, "running")
    assert went["move_note"] == (
        "failed over from host one: its writable layer stayed there (started fresh from the image); without "
        "its data, which stayed on host one: volume 'cachedata' at /c (new volumes here start empty)"
    )

    # Back and fenced: the instance that stayed runs there with its data, and its note is gone.
    await one.control.heartbeat(one.host_id, report(f"127.0.0.1:{one.server.config.port}", name="one"))
    await asyncio.gather(*list(failover._tasks))
    assert await _state(client, one.host_id) == "ready"
    assert (await client.get(f"{P}/instances/{db}")).json()["move_note"] == ""

    # Evacuation: refused without force (the answer says why), moved with it (the instance says what).
    resp = await client.post(f"/v1/cluster/hosts/{one.host_id}/evacuate", json={})
    assert resp.status_code == 200, resp.text
    assert [u["name"] for u in resp.json()["unmoved"]] == ["db"]
    assert (
        "its data would stay on host one: volume 'dbdata' at /var/db" in resp.json()["unmoved"][0]["reason"]
    )
    resp = await client.post(f"/v1/cluster/hosts/{one.host_id}/evacuate", json={"force": True})
    assert [m["left_behind"] for m in resp.json()["moved"]] == [["volume 'dbdata' at /var/db"]]
    assert (await client.get(f"{P}/instances/{db}")).json()["move_note"] == (
        "moved by evacuation from host one; without its data, which stayed on host one: "
        "volume 'dbdata' at /var/db (new volumes here start empty)"
    )
