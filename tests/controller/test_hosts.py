from __future__ import annotations

import httpx
import pytest

from atoll.model.errors import NotFound
from atoll.services.context import Controller
from atoll.services.hosts import list_hosts, register_host, unregister_host

from .factories import P, create_instance, error_of, import_image, run_instance
from .fakes import FakeAgent

pytestmark = pytest.mark.anyio


async def test_no_hosts_means_nothing_can_be_placed(client: httpx.AsyncClient, ctl: Controller) -> None:
    await import_image(client, 1)
    unregister_host(ctl, host_id="host-1")
    assert [h.state for h in list_hosts(ctl)] == ["offline"]
    err = error_of(await client.post(f"{P}/instances", json={"image": "busybox"}), 404)
    assert err["message"].startswith("no hosts")
    err = error_of(await client.post(f"{P}/images/import", content=b"[]"), 404)
    assert err["message"].startswith("no hosts")


async def test_register_is_idempotent(ctl: Controller, agent: FakeAgent) -> None:
    again = register_host(ctl, agent, name="renamed", runtime="crun", cgroup_version=2)
    assert again.name == "renamed" and again.state == "ready"
    assert [h.id for h in list_hosts(ctl)] == ["host-1"]


async def test_instances_of_a_disconnected_host(client: httpx.AsyncClient, ctl: Controller) -> None:
    await import_image(client, 1)
    await run_instance(client, name="web")
    unregister_host(ctl, host_id="host-1")
    err = error_of(await client.post(f"{P}/instances/web/kill"), 409)
    assert err["message"] == "host host-1 is not connected"
    err = error_of(await client.delete(f"{P}/instances/web"), 409)
    assert (await client.get(f"{P}/instances/web")).json()["desired_state"] == "running"
    # Force forgets it; the agent removes leftovers when it re-syncs.
    assert (await client.delete(f"{P}/instances/web", params={"force": "true"})).status_code == 204


async def test_remove_when_the_host_already_forgot(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    await import_image(client, 1)
    await create_instance(client, name="web")
    agent.fail["remove_instance"] = NotFound("no such instance")
    assert (await client.delete(f"{P}/instances/web")).status_code == 204
    agent.fail["remove_image"] = NotFound("no such image")
    assert (await client.delete(f"{P}/images/busybox")).json()["deleted"]
