"""Calls to every host are for changes every host must see: removing an instance that had no network
ports (in no overlay, no security group, no name server) tells no other host anything. At a thousand
hosts, telling them all made every remove a thousand calls."""

from __future__ import annotations

import httpx
import pytest

from tests.controller.factories import P, create_instance, import_image

from .conftest import InProcessCluster

pytestmark = pytest.mark.anyio

FANOUT = ("refresh_security", "refresh_overlay", "names_changed")


async def test_removing_a_portless_instance_tells_no_other_host(
    cluster: InProcessCluster, client: httpx.AsyncClient
) -> None:
    one, two = await cluster.add_host("one"), await cluster.add_host("two")
    await import_image(client, 1)
    inst = await create_instance(client, name="quiet")
    other = two if inst["host"] == one.host_id else one
    before = {name: len(other.fake.called(name)) for name in FANOUT}
    assert (await client.delete(f"{P}/instances/{inst['id']}")).status_code < 300
    assert {name: len(other.fake.called(name)) for name in FANOUT} == before
