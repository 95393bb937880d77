"""The in-memory claim sums (services/claimsums.py) stay equal to the database's ``GROUP BY`` through
every kind of write: create, resource update, move to another host, remove, a create that fails, a
rolled-back savepoint, a bulk update; and placement inside a transaction sees its own flushed rows."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select, update

from atoll.schemas import ResourcesWire
from atoll.services import claimsums, operate, placeindex
from atoll.store.models import InstanceRow
from tests.controller.factories import P, create_instance, error_of, import_image

from .conftest import GIB, InProcessCluster

pytestmark = pytest.mark.anyio


def in_sql(cluster: InProcessCluster) -> dict[str, tuple[int, int, int]]:
    with cluster.ctl.sessions() as s:
        rows = s.execute(
            select(
                InstanceRow.host_id,
                func.sum(InstanceRow.claim_cpu_millis),
                func.sum(InstanceRow.claim_memory_bytes),
                func.sum(InstanceRow.claim_pids),
            ).group_by(InstanceRow.host_id)
        )
        return {h: (int(c), int(m), int(p)) for h, c, m, p in rows}


def in_memory(cluster: InProcessCluster) -> dict[str, tuple[int, int, int]]:
    with cluster.ctl.sessions() as s:
        cache = claimsums.for_session(s)
        assert cache is not None
        return {h: c for h, c in cache.sums(s).items() if c != (0, 0, 0)}


async def test_sums_follow_every_write(cluster: InProcessCluster, client: httpx.AsyncClient) -> None:
    one, two = await cluster.add_host("one"), await cluster.add_host("two")
    await import_image(client, 1)
    with cluster.ctl.sessions() as s:
        cache = claimsums.for_session(s)
        assert cache is not None
        cache.sums(s)  # built now, then kept in step
        built = cache.rebuilds
    a = await create_instance(client, name="a", resources={"memory": GIB, "cpus": 0.5, "pids_limit": 9})
    await create_instance(client, name="b", resources={"memory": 2 * GIB})
    assert in_memory(cluster) == in_sql(cluster)
    # A resource update rewrites the claim columns.
    await operate.update(cluster.ctl, project="default", ref="b", resources=ResourcesWire(memory=3 * GIB))
    assert in_memory(cluster) == in_sql(cluster)
    # A move changes the host (as moves.rehome does): minus on one host, plus on the other.
    with cluster.ctl.sessions.begin() as s:
        row = s.get(InstanceRow, a["id"])
        assert row is not None
        row.host_id = two.host_id if row.host_id == one.host_id else one.host_id
    assert in_memory(cluster) == in_sql(cluster)
    # A create that fails (a name in use) rolls back: nothing of it stays.
    resp = await client.post(f"{P}/instances", json={"image": "busybox", "name": "a"})
    assert resp.status_code == 409
    assert in_memory(cluster) == in_sql(cluster)
    assert (await client.delete(f"{P}/instances/{a['id']}")).status_code < 300
    assert in_memory(cluster) == in_sql(cluster)
    assert cache.rebuilds <= built + 1, "kept in step: rebuilt at most after the failed create"


async def test_savepoints_bulk_updates_and_own_rows(
    cluster: InProcessCluster, client: httpx.AsyncClient
) -> None:
    await cluster.add_host("one")
    await import_image(client, 1)
    b = await create_instance(client, name="b", resources={"memory": 2 * GIB})
    assert in_memory(cluster) == in_sql(cluster)
    # A savepoint rolled back inside a transaction that commits.
    with cluster.ctl.sessions.begin() as s:
        row = s.get(InstanceRow, b["id"])
        assert row is not None
        s.flush()
        nested = s.begin_nested()
        row.claim_memory_bytes = 7 * GIB
        s.flush()
        nested.rollback()
    assert in_memory(cluster) == in_sql(cluster)
    # A bulk UPDATE that the session never sees row by row.
    with cluster.ctl.sessions.begin() as s:
        s.execute(update(InstanceRow).values(claim_pids=5))
    assert in_memory(cluster) == in_sql(cluster)
    # Inside a transaction, the sums count the rows it flushed and has not committed.
    with cluster.ctl.sessions.begin() as s:
        row = s.get(InstanceRow, b["id"])
        assert row is not None
        cache = claimsums.for_session(s)
        assert cache is not None
        before = cache.sums(s)[row.host_id]
        row.spec = {**row.spec, "resources": {**row.spec["resources"], "memory_bytes": 5 * GIB}}
        s.flush()
        assert cache.sums(s)[row.host_id][1] == before[1] + 3 * GIB
        s.rollback()
    assert in_memory(cluster) == in_sql(cluster)


async def test_the_kept_index_places_and_follows_commits(
    cluster: InProcessCluster, client: httpx.AsyncClient
) -> None:
    """One 8 GiB host holding the image: creates go through the index kept between creates
    (placeindex.py); a remove reaches it through the commit, so its room is usable at once."""
    one = await cluster.add_host("one")
    await import_image(client, 1)
    first = await create_instance(client, name="a", resources={"memory": 3 * GIB})
    await create_instance(client, name="b", resources={"memory": 3 * GIB})
    full = await client.post(f"{P}/instances", json={"image": "busybox", "resources": {"memory": 3 * GIB}})
    assert error_of(full, 409)["message"] == "no host fits: memory rejected 1 host"
    assert (await client.delete(f"{P}/instances/{first['id']}")).status_code < 300
    assert (await create_instance(client, name="c", resources={"memory": 3 * GIB}))["host"] == one.host_id
    with cluster.ctl.sessions() as s:
        live = placeindex.for_session(s)
        assert live is not None and live.placed == 4 and live.builds == 1
        index = live._index
        assert index is not None
        assert index.usage[one.host_id].memory_bytes == in_sql(cluster)[one.host_id][1] == 6 * GIB
