"""The whole channel in one process: join by token, then every kind of call both ways over mTLS."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from atoll.agent.cluster.membership import identity
from atoll.model.errors import BadImage, Forbidden, NotFound, Unauthorized
from atoll.model.image import ImageConfig, ImageRecord
from atoll.model.instance import LogEntry
from atoll.model.ports import ExecSpec
from atoll.services import membership
from atoll.store.cluster import JoinTokenRow
from atoll.wire import pki, tokens
from tests.controller.factories import P, create_instance, error_of, import_image
from tests.controller.fakes import image_id

from .conftest import GIB, InProcessCluster, report


def record(n: int, tag: str) -> ImageRecord:
    return ImageRecord(
        id=image_id(n),
        repo_tags=[tag],
        layers=[image_id(f"layer{n}")],
        size=100,
        created="2024-01-01T00:00:00Z",
        architecture="amd64",
        os="linux",
        config=ImageConfig(cmd=["sh"]),
    )


pytestmark = pytest.mark.anyio


async def test_join_then_lifecycle_logs_exec_over_the_wire(
    cluster: InProcessCluster, client: httpx.AsyncClient
) -> None:
    host = await cluster.add_host("one")
    assert host.host_id in cluster.ctl.agents
    # Streamed request body (import) and unary calls go controller -> agent over mTLS.
    await import_image(client, 1)
    assert host.fake.received, "the archive reached the fake host through the wire"
    inst = await create_instance(client, name="web")
    assert (await client.post(f"{P}/instances/web/start")).status_code == 200
    assert host.fake.running, host.fake.calls
    # Streams: logs come back as NDJSON, bytes intact (not UTF-8).
    host.fake.logs_of[inst["id"]] = [LogEntry("2024-01-01T00:00:00Z", "stdout", b"\xffhi\n")]
    logs = await client.get(f"{P}/instances/web/logs")
    assert logs.status_code == 200 and b"\xffhi" in logs.content
    # Exec over a websocket, through the controller's own exec API.
    proc = await cluster.ctl.agents.get(host.host_id).exec(
        inst["id"], ExecSpec(args=["echo", "over", "wire"])
    )
    out = [chunk async for chunk in proc.output()]
    assert out == [("stdout", b"over wire\n")] and await proc.wait() == 0
    # The agent's reports go agent -> controller (exits and restarts are the controller's decision).
    assert (await client.post(f"{P}/instances/web/kill")).status_code < 300
    assert (await client.delete(f"{P}/instances/web")).status_code < 300


async def test_domain_errors_cross_the_wire_as_themselves(cluster: InProcessCluster) -> None:
    host = await cluster.add_host("one")
    remote = cluster.ctl.agents.get(host.host_id)
    host.fake.fail["remove_image"] = NotFound("image x not found")
    with pytest.raises(NotFound, match="image x not found"):
        await remote.remove_image("sha256:" + "0" * 64)


async def test_tokens_are_single_use_expire_and_cannot_be_forged(cluster: InProcessCluster) -> None:
    token = cluster.token()
    await cluster.add_host("one", token=token)
    with pytest.raises(Unauthorized, match="already used"):
        await cluster.add_host("two", token=token)
    expired = cluster.token(ttl=0.001)
    await asyncio.sleep(0.01)
    with pytest.raises(Unauthorized, match="expired"):
        await cluster.add_host("three", token=expired)
    real = tokens.decode(cluster.token())
    forged = tokens.JoinToken(real.address, real.ca_fingerprint, tokens.new_secret()).encode()
    with pytest.raises(Unauthorized, match="forged"):
        await cluster.add_host("four", token=forged)
    wrong_ca = tokens.JoinToken(real.address, "sha256:" + "ab" * 32, real.secret).encode()
    with pytest.raises(Unauthorized, match="fingerprint"):
        await cluster.add_host("five", token=wrong_ca)
    with cluster.ctl.sessions() as s:
        unspent = s.get(JoinTokenRow, real.secret_hash)
        assert unspent is not None and unspent.used_at == ""  # the refused joins spent nothing
    assert [h.name for h in membership.list_hosts(cluster.ctl)] == ["one"]


async def test_a_host_cannot_act_for_another(cluster: InProcessCluster) -> None:
    one = await cluster.add_host("one")
    two = await cluster.add_host("two")
    await one.control.heartbeat(one.host_id, report("127.0.0.1:1"))
    with pytest.raises(Forbidden, match=f"belongs to host {one.host_id}"):
        await one.control.assignments(two.host_id)
    with pytest.raises(Forbidden):
        await one.control.heartbeat(two.host_id, report("127.0.0.1:1"))


async def test_a_removed_host_is_refused(cluster: InProcessCluster, client: httpx.AsyncClient) -> None:
    one = await cluster.add_host("one")
    assert (await client.delete(f"/v1/cluster/hosts/{one.host_id}")).status_code == 204
    with pytest.raises(Forbidden, match="not a member"):
        await one.control.assignments(one.host_id)


async def test_only_the_controller_may_call_an_agent(cluster: InProcessCluster) -> None:
    """A host's certificate is signed by the same CA, but the agent API admits the controller only."""
    one = await cluster.add_host("one")
    two = await cluster.add_host("two")
    ctx = identity(two.data_dir).client_context()
    address = f"https://127.0.0.1:{one.server.config.port}/rpc/image_present"
    async with httpx.AsyncClient(verify=ctx) as c:
        with pytest.raises(httpx.HTTPError):
            await c.post(
                address,
                content=b'{"image_id":"x"}',
                extensions={"sni_hostname": pki.host_dns_name(one.host_id)},
            )


async def test_heartbeats_capacity_drain_and_down(
    cluster: InProcessCluster, client: httpx.AsyncClient
) -> None:
    one = await cluster.add_host("one")
    two = await cluster.add_host("two")
    for h in (one, two):
        await h.control.heartbeat(h.host_id, report(f"127.0.0.1:{h.server.config.port}"))
    await import_image(client, 1)  # on the first host only
    # Both hosts hold the image, so placement is free to choose.
    two.fake.images[image_id(1)] = one.fake.images[image_id(1)]
    membership.record_image_on_host(cluster.ctl, image_id=image_id(1), host_id=two.host_id)
    hosts = (await client.get("/v1/cluster/hosts")).json()
    assert {h["state"] for h in hosts} == {"ready"}
    assert hosts[0]["capacity"]["cpu_millis"] == 4000
    # binpack: both land on the same host while it fits; 6 GiB each on 8 GiB hosts => one per host.
    a = await create_instance(client, name="a", resources={"memory": 6 * GIB})
    b = await create_instance(client, name="b", resources={"memory": 6 * GIB})
    assert a["host"] != b["host"]
    err = error_of(
        await client.post(f"{P}/instances", json={"image": "busybox", "resources": {"memory": 6 * GIB}}), 409
    )
    assert err["message"] == "no host fits: memory rejected 2 hosts"
    # Drain: no new placements there.
    drained = (await client.post(f"/v1/cluster/hosts/{one.host_id}/drain")).json()
    assert drained["state"] == "draining"
    for i in range(2):
        assert (await create_instance(client, name=f"small{i}", resources={"memory": GIB}))[
            "host"
        ] == two.host_id
    err = error_of(
        await client.post(f"{P}/instances", json={"image": "busybox", "resources": {"memory": GIB}}), 409
    )
    assert err["message"] == "no host fits: state draining rejected 1 host, memory rejected 1 host"
    await client.post(f"/v1/cluster/hosts/{one.host_id}/undrain")
    # Heartbeat loss: the silent host is marked down and takes no placements.
    await asyncio.sleep(0.6)
    await two.control.heartbeat(two.host_id, report(f"127.0.0.1:{two.server.config.port}"))
    assert membership.mark_silent_hosts_down(cluster.ctl) == [one.host_id]
    assert one.host_id not in cluster.ctl.agents and two.host_id in cluster.ctl.agents
    states = {h["id"]: h["state"] for h in (await client.get("/v1/cluster/hosts")).json()}
    assert states == {one.host_id: "down", two.host_id: "ready"}
    err = error_of(
        await client.post(f"{P}/instances", json={"image": "busybox", "resources": {"memory": GIB}}), 409
    )
    assert "state down rejected 1 host" in err["message"]
    # It comes back with its next heartbeat.
    await one.control.heartbeat(one.host_id, report(f"127.0.0.1:{one.server.config.port}"))
    assert (await client.get(f"/v1/cluster/hosts/{one.host_id}")).json()["state"] == "ready"
    assert one.host_id in cluster.ctl.agents


async def test_pull_progress_and_errors_stream_over_the_wire(
    cluster: InProcessCluster, client: httpx.AsyncClient
) -> None:
    host = await cluster.add_host("one")
    host.fake.pullable["reg.example/app:1"] = record(7, "reg.example/app:1")
    resp = await client.post(f"{P}/images/pull", json={"reference": "reg.example/app:1"})
    assert resp.status_code == 200, resp.text
    events = [json.loads(line) for line in resp.text.splitlines()]
    assert events[0]["status"] == "Downloading" and "digest" in json.dumps(events[-1])
    assert image_id(7) in host.fake.images
    err = error_of(await client.post(f"{P}/images/pull", json={"reference": "reg.example/absent:1"}), 404)
    assert err["message"] == "reg.example/absent:1: manifest unknown"


async def test_concurrent_creates_never_over_book(
    cluster: InProcessCluster, client: httpx.AsyncClient
) -> None:
    """Twenty creates at once, 3 GiB each, on two 8 GiB hosts: exactly two fit on each."""
    one = await cluster.add_host("one")
    two = await cluster.add_host("two")
    await import_image(client, 1)
    two.fake.images[image_id(1)] = one.fake.images[image_id(1)]
    membership.record_image_on_host(cluster.ctl, image_id=image_id(1), host_id=two.host_id)
    body = {"image": "busybox", "resources": {"memory": 3 * GIB}}
    answers = await asyncio.gather(*(client.post(f"{P}/instances", json=body) for _ in range(20)))
    created = [r.json() for r in answers if r.status_code == 201]
    assert sorted(r.status_code for r in answers) == [201] * 4 + [409] * 16
    assert sorted(i["host"] for i in created) == sorted([one.host_id] * 2 + [two.host_id] * 2)
    for host in membership.list_hosts(cluster.ctl):
        assert host.capacity is not None and host.allocated.memory_bytes <= host.capacity.memory_bytes


async def test_placement_prefers_holders_then_copies_the_image(
    cluster: InProcessCluster, client: httpx.AsyncClient
) -> None:
    one = await cluster.add_host("one")
    two = await cluster.add_host("two")
    await import_image(client, 1)
    holder = one if image_id(1) in one.fake.images else two
    other = two if holder is one else one
    a = await create_instance(client, name="a", resources={"memory": 6 * GIB})
    assert a["host"] == holder.host_id and not other.fake.called("import_images")
    # The holder is full: placement spills over and the image is copied, host to host, over the wire.
    b = await create_instance(client, name="b", resources={"memory": 6 * GIB})
    assert b["host"] == other.host_id
    assert holder.fake.called("export_image") == [image_id(1)]
    assert other.fake.images[image_id(1)] == holder.fake.images[image_id(1)]
    # A copy that fails leaves nothing behind. Image 2 lands on one host; fill that host up.
    await import_image(client, 2)
    src = one if image_id(2) in one.fake.images else two
    dst = two if src is one else one
    for name in ("c", "fill"):
        await create_instance(client, name=name, image=image_id(2), resources={"memory": GIB})
    src.fake.fail["export_image"] = BadImage("layer x has no kept blob")
    err = error_of(
        await client.post(
            f"{P}/instances", json={"image": image_id(2), "name": "late", "resources": {"memory": GIB}}
        ),
        409,
    )
    assert "could not be copied" in err["message"] and "no kept blob" in err["message"]
    got = await client.get(f"{P}/instances/late")
    assert got.status_code == 404, (err, got.text)
    assert image_id(2) not in dst.fake.images
