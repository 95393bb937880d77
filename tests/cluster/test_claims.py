"""Claims as columns (``store/claims.py``): placement sums them in SQL, so they must follow the spec on
every write path: create, a resource update, removal."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from atoll.schemas import ResourcesWire
from atoll.services import membership, operate
from atoll.services.placement import allocations, instance_counts
from atoll.store.models import InstanceRow
from tests.controller.factories import P, create_instance, import_image

from .conftest import GIB, InProcessCluster

pytestmark = pytest.mark.anyio


async def test_claims_follow_create_update_and_remove(
    cluster: InProcessCluster, client: httpx.AsyncClient
) -> None:
    one = await cluster.add_host("one")
    await import_image(client, 1)
    a = await create_instance(client, name="a", resources={"memory": GIB, "cpus": 0.5, "pids_limit": 100})
    await create_instance(client, name="b", resources={"memory": 2 * GIB}, labels={"role": "db"})
    with cluster.ctl.sessions() as s:
        rows = {
            r.name: (r.claim_cpu_millis, r.claim_memory_bytes, r.claim_pids)
            for r in s.scalars(select(InstanceRow))
        }
        assert rows == {"a": (500, GIB, 100), "b": (0, 2 * GIB, 0)}
        usage = allocations(s)[one.host_id]
        assert (usage.cpu_millis, usage.memory_bytes, usage.pids) == (500, 3 * GIB, 100)
        assert {i.name: dict(i.labels) for i in usage.instances} == {"a": {}, "b": {"role": "db"}}
        assert allocations(s, instances=False)[one.host_id].instances == ()
        assert instance_counts(s) == {one.host_id: 2}
    # `docker update` rewrites the spec: the claim follows.
    await operate.update(cluster.ctl, project="default", ref="b", resources=ResourcesWire(memory=3 * GIB))
    [host] = membership.list_hosts(cluster.ctl)
    assert host.allocated.memory_bytes == 4 * GIB and host.instances == 2
    assert (await client.delete(f"{P}/instances/{a['id']}")).status_code < 300
    [host] = membership.list_hosts(cluster.ctl)
    assert host.allocated.memory_bytes == 3 * GIB and host.instances == 1
