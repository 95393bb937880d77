from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from atoll.model.instance import ExitInfo, InstanceStatus, RuntimeState
from atoll.model.ports import ControlPlane
from atoll.services.context import Controller
from atoll.services.control import LocalControlPlane

from .factories import P, create_instance, error_of, import_image, run_instance
from .fakes import FakeAgent

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
async def busybox(client: httpx.AsyncClient) -> None:
    await import_image(client, 1)


@pytest.fixture
def plane(ctl: Controller) -> ControlPlane:
    return LocalControlPlane(ctl)


async def state(client: httpx.AsyncClient, ref: str) -> dict[str, Any]:
    out: dict[str, Any] = (await client.get(f"{P}/instances/{ref}")).json()
    return out


async def restarted(plane: ControlPlane, agent: FakeAgent, instance_id: str, started_at: str = "") -> None:
    """What the agent does once the back-off is over: start it again and say so."""
    agent.next_pid += 1
    agent.running[instance_id] = agent.next_pid
    await plane.instance_started(
        agent.host_id, RuntimeState(id=instance_id, running=True, pid=agent.next_pid, started_at=started_at)
    )


async def test_on_failure_counts_restarts_up_to_max(
    client: httpx.AsyncClient, agent: FakeAgent, plane: ControlPlane
) -> None:
    inst = await run_instance(client, name="job", restart_policy={"name": "on-failure", "max_retries": 2})
    iid = inst["id"]
    assert await agent.exit(iid, 1) == pytest.approx(0.1)
    s = await state(client, "job")
    assert (s["status"], s["restart_count"], s["exit_code"], s["desired_state"]) == (
        "restarting",
        1,
        1,
        "running",
    )
    await restarted(plane, agent, iid)
    assert (await state(client, "job"))["status"] == "running"
    assert await agent.exit(iid, 1) == pytest.approx(0.2)
    await restarted(plane, agent, iid)
    assert await agent.exit(iid, 1) is None
    s = await state(client, "job")
    assert (s["status"], s["restart_count"], s["desired_state"]) == ("exited", 2, "stopped")
    # A user start resets the count.
    assert (await client.post(f"{P}/instances/job/start")).json()["restart_count"] == 0


async def test_on_failure_success_stays_down(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    inst = await run_instance(client, restart_policy={"name": "on-failure"})
    assert await agent.exit(inst["id"], 0) is None
    assert (await state(client, inst["id"]))["status"] == "exited"


async def test_duplicate_exit_reports_count_once(
    client: httpx.AsyncClient, agent: FakeAgent, plane: ControlPlane
) -> None:
    inst = await run_instance(client, restart_policy={"name": "always"})
    exit = ExitInfo(exit_code=2, finished_at="2030-01-01T00:00:00.123456789Z")
    first = await plane.instance_exited(agent.host_id, inst["id"], exit)
    again = await plane.instance_exited(agent.host_id, inst["id"], exit)
    assert first == pytest.approx(0.1)
    assert again is not None and first is not None and 0 <= again <= first
    s = await state(client, inst["id"])
    assert (s["restart_count"], s["finished_at"]) == (1, "2030-01-01T00:00:00.123456789Z")
    # A different end while restarting is a failed restart: it counts.
    later = ExitInfo(exit_code=2, finished_at="2030-01-01T00:00:01Z")
    assert await plane.instance_exited(agent.host_id, inst["id"], later) == pytest.approx(0.2)
    assert (await state(client, inst["id"]))["restart_count"] == 2


async def test_duplicate_final_exit_is_ignored(
    client: httpx.AsyncClient, agent: FakeAgent, plane: ControlPlane
) -> None:
    inst = await run_instance(client)
    exit = ExitInfo(exit_code=4, oom_killed=True, finished_at="2030-01-01T00:00:00Z", error="oom")
    assert await plane.instance_exited(agent.host_id, inst["id"], exit) is None
    assert await plane.instance_exited(agent.host_id, inst["id"], ExitInfo(exit_code=9)) is None
    s = await state(client, inst["id"])
    assert (s["exit_code"], s["oom_killed"], s["error"]) == (4, True, "oom")


async def test_reports_from_another_host_are_ignored(
    client: httpx.AsyncClient, agent: FakeAgent, plane: ControlPlane
) -> None:
    inst = await run_instance(client)
    assert await plane.instance_exited("host-2", inst["id"], ExitInfo(exit_code=1)) is None
    assert await plane.instance_exited(agent.host_id, "f" * 64, ExitInfo(exit_code=1)) is None
    assert (await state(client, inst["id"]))["status"] == "running"


async def test_user_stop_prevents_restart(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    await run_instance(client, name="svc", restart_policy={"name": "unless-stopped"})
    s = (await client.post(f"{P}/instances/svc/stop")).json()
    assert (s["status"], s["restart_count"], s["exit_code"]) == ("exited", 0, 143)


async def test_stop_while_restarting(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    inst = await run_instance(client, name="svc", restart_policy={"name": "always"})
    await agent.exit(inst["id"], 1)
    s = (await client.post(f"{P}/instances/svc/stop")).json()
    assert (s["status"], s["desired_state"]) == ("exited", "stopped")
    assert agent.called("stop_instance")[-1][0] == inst["id"]


async def test_backoff_resets_after_a_long_run(
    client: httpx.AsyncClient, agent: FakeAgent, plane: ControlPlane
) -> None:
    inst = await run_instance(client, restart_policy={"name": "always"})
    iid = inst["id"]
    delays = []
    for _ in range(3):
        delays.append(await agent.exit(iid, 1))
        await restarted(plane, agent, iid)
    assert delays == pytest.approx([0.1, 0.2, 0.4])
    await restarted(plane, agent, iid, started_at="2030-01-01T00:00:00Z")
    assert await agent.exit(iid, 1, finished_at="2030-01-01T00:00:30Z") == pytest.approx(0.1)
    await restarted(plane, agent, iid)
    assert await agent.exit(iid, 1) == pytest.approx(0.2)
    assert (await state(client, iid))["restart_count"] == 5


async def test_auto_remove(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    inst = await run_instance(client, name="tmp", auto_remove=True)
    waiter = asyncio.create_task(client.post(f"{P}/instances/tmp/wait", params={"condition": "removed"}))
    await asyncio.sleep(0.05)
    assert await agent.exit(inst["id"], 7) is None
    assert (await asyncio.wait_for(waiter, 5)).json()["exit_code"] == 7
    assert agent.called("remove_instance") == [inst["id"]]
    error_of(await client.get(f"{P}/instances/tmp"), 404)


async def test_auto_remove_on_stop(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    await run_instance(client, name="tmp", auto_remove=True)
    s = (await client.post(f"{P}/instances/tmp/stop")).json()
    assert s["status"] == "exited"
    error_of(await client.get(f"{P}/instances/tmp"), 404)


async def test_force_remove_of_auto_remove_instance_removes_once(
    client: httpx.AsyncClient, agent: FakeAgent
) -> None:
    inst = await run_instance(client, name="tmp", auto_remove=True)
    assert (await client.delete(f"{P}/instances/tmp", params={"force": "true"})).status_code == 204
    assert agent.called("remove_instance") == [inst["id"]]


async def test_assignments(client: httpx.AsyncClient, agent: FakeAgent, plane: ControlPlane) -> None:
    running = await run_instance(client, name="a", resources={"memory": 64 << 20})
    created = await create_instance(client, name="b")
    got = {a.spec.id: a for a in await plane.assignments(agent.host_id)}
    assert set(got) == {running["id"], created["id"]}
    assert got[running["id"]].desired_running and got[running["id"]].status == InstanceStatus.RUNNING
    assert not got[created["id"]].desired_running and got[created["id"]].status == InstanceStatus.CREATED
    assert got[running["id"]].spec.resources.memory_bytes == 64 << 20
    assert got[running["id"]].spec == agent.called("create_instance")[0]
    assert await plane.assignments("host-2") == []


async def test_started_report_is_idempotent(
    client: httpx.AsyncClient, agent: FakeAgent, plane: ControlPlane
) -> None:
    inst = await run_instance(client)
    before = await state(client, inst["id"])
    report = RuntimeState(id=inst["id"], running=True, pid=before["pid"], started_at="2030-01-01T00:00:00Z")
    await plane.instance_started(agent.host_id, report)
    assert await state(client, inst["id"]) == before
    # A not-running state with an exit is an exit report.
    gone = RuntimeState(id=inst["id"], running=False, exit=ExitInfo(exit_code=3))
    await plane.instance_started(agent.host_id, gone)
    assert (await state(client, inst["id"]))["exit_code"] == 3
