from __future__ import annotations

import asyncio
import re
import struct
from typing import Any

import httpx
import pytest

from atoll.api.app import create_app
from atoll.model.errors import RuntimeFailure
from atoll.model.instance import ExitInfo, LogEntry
from atoll.services.context import Controller

from .factories import P, create_instance, error_of, import_image, run_instance
from .fakes import FakeAgent

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
async def busybox(client: httpx.AsyncClient) -> dict[str, Any]:
    return await import_image(client, 1, tags=["busybox:latest"], cmd=["sh"], env=["PATH=/bin", "A=1"])


async def get(client: httpx.AsyncClient, ref: str) -> dict[str, Any]:
    resp = await client.get(f"{P}/instances/{ref}")
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def test_create(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    inst = await create_instance(
        client, command=["echo", "hi"], env=["B=2"], labels={"app": "web"}, resources={"cpus": 0.5}
    )
    assert re.fullmatch(r"[0-9a-f]{64}", inst["id"])
    assert re.fullmatch(r"[a-z]+_[a-z]+", inst["name"])
    assert inst["status"] == "created" and inst["desired_state"] == "stopped"
    assert inst["exit_code"] is None and inst["restart_count"] == 0 and inst["pid"] == 0
    assert inst["image"] == "busybox" and inst["host"] == "host-1" and inst["hostname"] == inst["id"][:12]
    assert inst["process"]["args"] == ["echo", "hi"]
    assert inst["process"]["env"] == ["PATH=/bin", f"HOSTNAME={inst['id'][:12]}", "A=1", "B=2"]
    assert inst["resources"]["cpus"] == 0.5 and inst["resources"]["cpu_quota"] == 50_000
    [spec] = agent.called("create_instance")
    assert spec.id == inst["id"] and spec.layers == ["sha256:" + spec.layers[0][7:]]
    assert await get(client, inst["id"]) == inst


async def test_name_conflict(client: httpx.AsyncClient) -> None:
    first = await create_instance(client, name="web")
    err = error_of(await client.post(f"{P}/instances", json={"image": "busybox", "name": "web"}), 409)
    assert err["message"] == f"name: 'web' is already in use by instance {first['id'][:12]}"
    await client.post("/v1/projects", json={"name": "other"})
    await import_image(client, 1, project="other")
    assert (await create_instance(client, project="other", name="web"))["name"] == "web"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"resources": {"memory_swap": 1 << 30}}, 400, "resources.memory_swap:"),
        ({"resources": {"memory": 1}}, 400, "resources.memory:"),
        ({"resources": {"cpus": 1, "cpu_quota": 50000}}, 400, "resources.cpus:"),
        ({"bogus": 1}, 400, "bogus:"),
        ({"name": "bad name"}, 400, "name:"),
        ({"command": "ls"}, 400, "command:"),
        ({"working_dir": "rel"}, 400, "working_dir:"),
        ({"stop_signal": "SIGFOO"}, 400, "stop_signal:"),
        ({"auto_remove": True, "restart_policy": {"name": "always"}}, 400, "auto_remove:"),
        ({"restart_policy": {"name": "sometimes"}}, 400, "restart_policy.name:"),
        ({"command": [], "entrypoint": []}, 400, "no command:"),
        ({"image": "nothere"}, 404, "image 'nothere' not found"),
        ({"image": ""}, 400, "image:"),
    ],
)
async def test_create_errors(
    client: httpx.AsyncClient, agent: FakeAgent, body: dict[str, Any], status: int, field: str
) -> None:
    err = error_of(await client.post(f"{P}/instances", json={"image": "busybox", **body}), status)
    assert err["message"].startswith(field), err
    assert agent.called("create_instance") == []
    assert (await client.get(f"{P}/instances", params={"all": "true"})).json() == []


async def test_agent_failure_on_create_leaves_nothing(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    agent.fail["create_instance"] = RuntimeFailure("no space left on device")
    err = error_of(await client.post(f"{P}/instances", json={"image": "busybox", "name": "web"}), 500)
    assert err == {"code": "runtime", "message": "no space left on device"}
    assert (await client.get(f"{P}/instances", params={"all": "true"})).json() == []
    assert (await create_instance(client, name="web"))["name"] == "web"


async def test_unexpected_errors_are_500_with_the_shape(ctl: Controller, agent: FakeAgent) -> None:
    agent.fail["create_instance"] = ValueError("boom")
    transport = httpx.ASGITransport(app=create_app(ctl), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://atoll") as c:
        err = error_of(await c.post(f"{P}/instances", json={"image": "busybox"}), 500)
    assert err["code"] == "internal" and "boom" in err["message"]


async def test_start_wait_exit(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    inst = await create_instance(client, name="job")
    resp = await client.post(f"{P}/instances/job/start")
    assert resp.status_code == 200
    started = resp.json()
    assert started["status"] == "running" and started["pid"] > 0 and started["started_at"]
    assert started["desired_state"] == "running"
    waiter = asyncio.create_task(client.post(f"{P}/instances/job/wait"))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await agent.exit(inst["id"], 3)
    resp = await asyncio.wait_for(waiter, 5)
    assert resp.json() == {"exit_code": 3, "oom_killed": False, "error": ""}
    done = await get(client, "job")
    assert (done["status"], done["exit_code"], done["desired_state"]) == ("exited", 3, "stopped")
    assert done["finished_at"] >= done["started_at"]
    # Waiting on an exited instance returns at once; starting again runs it again.
    assert (await client.post(f"{P}/instances/job/wait")).json()["exit_code"] == 3
    again = (await client.post(f"{P}/instances/job/start")).json()
    assert again["status"] == "running" and again["exit_code"] is None


async def test_start_twice_is_a_noop(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    await run_instance(client, name="web")
    assert (await client.post(f"{P}/instances/web/start")).json()["status"] == "running"
    assert len(agent.called("start_instance")) == 1


async def test_start_failure_is_recorded(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    await create_instance(client, name="web")
    agent.fail["start_instance"] = RuntimeFailure("exec: no such file")
    err = error_of(await client.post(f"{P}/instances/web/start"), 500)
    assert err["message"] == "exec: no such file"
    inst = await get(client, "web")
    assert (inst["status"], inst["desired_state"], inst["error"]) == (
        "created",
        "stopped",
        "exec: no such file",
    )


async def test_exit_reported_before_start_returns(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    inst = await create_instance(client, name="quick")
    agent.exit_during_start[inst["id"]] = ExitInfo(exit_code=0, finished_at="2030-01-01T00:00:00.000000001Z")
    started = (await client.post(f"{P}/instances/quick/start")).json()
    assert (started["status"], started["exit_code"]) == ("exited", 0)
    assert (await client.post(f"{P}/instances/quick/wait")).json()["exit_code"] == 0


async def test_stop(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    inst = await run_instance(client, name="web", stop_signal="SIGINT", stop_timeout=7)
    stopped = (await client.post(f"{P}/instances/web/stop", params={"timeout": 2})).json()
    assert (stopped["status"], stopped["exit_code"], stopped["desired_state"]) == ("exited", 130, "stopped")
    assert agent.called("stop_instance") == [(inst["id"], "SIGINT", 2.0)]
    assert (await client.post(f"{P}/instances/web/stop")).json()["status"] == "exited"
    assert len(agent.called("stop_instance")) == 1
    error_of(await client.post(f"{P}/instances/web/stop", params={"timeout": -1}), 400)
    # Without a timeout, the instance's own applies.
    await client.post(f"{P}/instances/web/start")
    await client.post(f"{P}/instances/web/stop")
    assert agent.called("stop_instance")[-1] == (inst["id"], "SIGINT", 7.0)


async def test_kill(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    inst = await create_instance(client, name="web", restart_policy={"name": "always"})
    err = error_of(await client.post(f"{P}/instances/web/kill"), 409)
    assert err["message"] == "instance web is not running"
    await client.post(f"{P}/instances/web/start")
    err = error_of(await client.post(f"{P}/instances/web/kill", params={"signal": "SIGNOPE"}), 400)
    assert err["message"].startswith("signal:")
    hup = (await client.post(f"{P}/instances/web/kill", params={"signal": "hup"})).json()
    assert agent.called("signal_instance") == [(inst["id"], "SIGHUP")]
    assert hup["status"] == "exited" and hup["exit_code"] == 129  # the fake dies of SIGHUP; no restart
    await client.post(f"{P}/instances/web/start")
    killed = (await client.post(f"{P}/instances/web/kill", params={"signal": "9"})).json()
    assert (killed["status"], killed["exit_code"], killed["restart_count"]) == ("exited", 137, 0)


async def test_restart(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    first = await run_instance(client, name="web")
    again = (await client.post(f"{P}/instances/web/restart", params={"timeout": 1})).json()
    assert again["status"] == "running" and again["pid"] != first["pid"]
    assert len(agent.called("stop_instance")) == 1 and len(agent.called("start_instance")) == 2


async def test_remove(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    inst = await run_instance(client, name="web")
    err = error_of(await client.delete(f"{P}/instances/web"), 409)
    assert err["message"] == "instance web is running: stop it first or use force"
    resp = await client.delete(f"{P}/instances/web", params={"force": "true"})
    assert resp.status_code == 204 and resp.content == b""
    assert agent.called("remove_instance") == [inst["id"]]
    assert error_of(await client.get(f"{P}/instances/web"), 404)["message"] == "instance 'web' not found"
    created = await create_instance(client, name="web")
    assert (await client.delete(f"{P}/instances/{created['id'][:10]}")).status_code == 204
    error_of(await client.delete(f"{P}/instances/web"), 404)


async def test_refs_and_list_filters(client: httpx.AsyncClient) -> None:
    await client.post("/v1/projects", json={"name": "other"})
    await import_image(client, 1, project="other")
    hidden = await create_instance(client, project="other", name="hidden")
    web = await run_instance(client, name="web-1", labels={"app": "web", "tier": "front"})
    await create_instance(client, name="web-2", labels={"app": "web"})
    await create_instance(client, name="db", labels={"app": "db"})

    async def names(**params: Any) -> list[str]:
        resp = await client.get(f"{P}/instances", params=params)
        assert resp.status_code == 200, resp.text
        return sorted(i["name"] for i in resp.json())

    assert await names() == ["web-1"]
    assert await names(all="true") == ["db", "web-1", "web-2"]
    assert await names(all="true", label="app=web") == ["web-1", "web-2"]
    assert await names(all="true", label=["app=web", "tier"]) == ["web-1"]
    assert await names(all="true", name=["web", "zzz"]) == ["web-1", "web-2"]
    assert await names(status="created") == ["db", "web-2"]
    assert await names(status=["created", "running"]) == ["db", "web-1", "web-2"]
    err = error_of(await client.get(f"{P}/instances", params={"status": "sleeping"}), 400)
    assert err["message"].startswith("status:")
    assert (await get(client, web["id"][:7]))["name"] == "web-1"
    assert (await get(client, "web-1"))["id"] == web["id"]
    error_of(await client.get(f"{P}/instances/{hidden['id']}"), 404)
    error_of(await client.get(f"{P}/instances/hidden"), 404)


async def test_ambiguous_instance_prefix(client: httpx.AsyncClient) -> None:
    ids = [(await create_instance(client))["id"] for _ in range(17)]  # 17 ids: two share a first digit
    first = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
    err = error_of(await client.get(f"{P}/instances/{first}"), 409)
    assert "ambiguous" in err["message"]


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        stream, length = struct.unpack(">BxxxI", data[:8])
        out.append((stream, data[8 : 8 + length]))
        data = data[8 + length :]
    return out


async def test_logs(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    inst = await run_instance(client, name="web")
    agent.logs_of[inst["id"]] = [
        LogEntry(time="2024-01-01T00:00:00.000000001Z", stream="stdout", data=b"hello\n"),
        LogEntry(time="2024-01-01T00:00:01.000000001Z", stream="stderr", data=b"oops\n"),
        LogEntry(time="2024-01-01T00:00:02.000000001Z", stream="stdout", data=b"partial", partial=True),
    ]
    resp = await client.get(f"{P}/instances/web/logs")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/vnd.atoll.multiplexed-stream"
    assert _frames(resp.content) == [(1, b"hello\n"), (2, b"oops\n"), (1, b"partial")]
    resp = await client.get(
        f"{P}/instances/web/logs", params={"timestamps": "true", "tail": 1, "since": "2024-01-01T00:00:00Z"}
    )
    assert _frames(resp.content) == [(1, b"2024-01-01T00:00:02.000000001Z partial")]
    assert agent.called("logs")[-1] == (inst["id"], False, 1, "2024-01-01T00:00:00Z")
    assert error_of(await client.get(f"{P}/instances/nope/logs"), 404)["code"] == "not_found"
    assert error_of(await client.get(f"{P}/instances/web/logs", params={"tail": -1}), 400)[
        "message"
    ].startswith("tail:")


async def test_wait_conditions(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    inst = await run_instance(client, name="svc", restart_policy={"name": "always"})
    created = await create_instance(client, name="fresh")
    # A created instance is not running: "not-running" returns at once.
    assert (await client.post(f"{P}/instances/fresh/wait")).json()["exit_code"] == 0
    nxt = asyncio.create_task(client.post(f"{P}/instances/svc/wait", params={"condition": "next-exit"}))
    not_running = asyncio.create_task(client.post(f"{P}/instances/svc/wait"))
    removed = asyncio.create_task(client.post(f"{P}/instances/fresh/wait", params={"condition": "removed"}))
    await asyncio.sleep(0.05)
    assert await agent.exit(inst["id"], 5) == pytest.approx(0.1)
    assert (await asyncio.wait_for(nxt, 5)).json()["exit_code"] == 5
    assert (await get(client, "svc"))["status"] == "restarting"
    assert not not_running.done()
    await client.post(f"{P}/instances/svc/stop")
    assert (await asyncio.wait_for(not_running, 5)).json()["exit_code"] == 5
    assert (await get(client, "svc"))["status"] == "exited"
    await client.delete(f"{P}/instances/{created['id']}")
    assert (await asyncio.wait_for(removed, 5)).json()["exit_code"] == 0
    err = error_of(await client.post(f"{P}/instances/svc/wait", params={"condition": "never"}), 400)
    assert err["message"].startswith("condition:")
