"""pause/unpause, top, stats and update of a container."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from atoll.api.docker.containers import PROJECT, Containers
from atoll.api.docker.create import is_zero, resources, restart_policy
from atoll.api.docker.http import DockerError, Empty, Json, Request, Stream, bad_request
from atoll.api.docker.router import Route
from atoll.model.errors import Conflict
from atoll.model.usage import InstanceStats
from atoll.schemas import Instance
from atoll.services import operate

STATS_INTERVAL = 1.0
UPDATE_FIELDS = {
    "Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "PidsLimit", "RestartPolicy",
}  # fmt: skip
ZERO_TIME = "0001-01-01T00:00:00Z"


def _cpu(sample: InstanceStats | None) -> dict[str, Any]:
    if sample is None:
        return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}  # fmt: skip
    return {
        "cpu_usage": {
            "total_usage": sample.cpu_total_ns,
            "usage_in_kernelmode": sample.cpu_system_ns,
            "usage_in_usermode": sample.cpu_user_ns,
        },
        "system_cpu_usage": sample.system_cpu_ns,
        "online_cpus": sample.online_cpus,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }


def stats_json(inst: Instance, now: InstanceStats | None, before: InstanceStats | None) -> dict[str, Any]:
    """Docker's stats document; ``precpu_stats`` is the previous sample, from which clients compute CPU%."""
    return {
        "read": now.read if now else ZERO_TIME,
        "preread": before.read if before else ZERO_TIME,
        "name": "/" + inst.name,
        "id": inst.id,
        "num_procs": 0,
        "pids_stats": {"current": now.pids_current, "limit": now.pids_limit} if now else {},
        "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None},
        "storage_stats": {},
        "networks": dict(now.networks) if now else {},
        "cpu_stats": _cpu(now),
        "precpu_stats": _cpu(before),
        "memory_stats": {
            "usage": now.memory_usage,
            "limit": now.memory_limit,
            "stats": {"inactive_file": now.memory_inactive_file},
        }
        if now
        else {},
    }


class Usage:
    def __init__(self, containers: Containers) -> None:
        self.containers = containers
        self.ctl = containers.ctl

    async def pause(self, req: Request) -> Empty:
        inst = self.containers.get(req.params["id"])
        if inst.status != "running":
            raise DockerError(409, f"Container {inst.id} is not running")
        if inst.paused:
            raise DockerError(409, f"Container {inst.id} is already paused")
        await operate.pause(self.ctl, project=PROJECT, ref=inst.id)
        return Empty(204)

    async def unpause(self, req: Request) -> Empty:
        inst = self.containers.get(req.params["id"])
        if not inst.paused:
            raise DockerError(409, f"Container {inst.id} is not paused")
        await operate.unpause(self.ctl, project=PROJECT, ref=inst.id)
        return Empty(204)

    async def top(self, req: Request) -> Json:
        inst = self.containers.get(req.params["id"])
        if inst.status != "running":
            raise DockerError(409, f"Container {inst.id} is not running")
        table = await operate.top(self.ctl, project=PROJECT, ref=inst.id, ps_args=req.arg("ps_args"))
        return Json({"Titles": table.titles, "Processes": table.processes})

    async def _sample(self, inst: Instance) -> InstanceStats | None:
        try:
            return await operate.stats(self.ctl, project=PROJECT, ref=inst.id)
        except Conflict:  # not running (any more): Docker reports zeros
            return None

    async def stats(self, req: Request) -> Stream:
        inst = self.containers.get(req.params["id"])
        stream = req.flag("stream", default=True)
        one_shot = req.flag("one-shot")
        if one_shot and stream:
            raise bad_request("one-shot: cannot be used with stream=true")
        first = await self._sample(inst)

        async def body() -> AsyncIterator[bytes]:
            before, now = None, first
            if not stream:
                if not one_shot and now is not None:
                    await asyncio.sleep(STATS_INTERVAL)
                    before, now = now, await self._sample(inst)
                yield json.dumps(stats_json(inst, now, before)).encode() + b"\n"
                return
            while True:
                yield json.dumps(stats_json(inst, now, before)).encode() + b"\n"
                await asyncio.sleep(STATS_INTERVAL)
                before, now = now, await self._sample(inst)
                if now is None and before is None:
                    return

        return Stream(body())

    async def update(self, req: Request) -> Json:
        inst = self.containers.get(req.params["id"])
        body = req.json_object()
        for key, value in body.items():
            if key not in UPDATE_FIELDS and not is_zero(value):
                raise bad_request(f"{key}: cannot be updated by Atoll yet (got {value!r})")
        policy = restart_policy(body) if body.get("RestartPolicy") else None
        await operate.update(
            self.ctl, project=PROJECT, ref=inst.id, resources=resources(body), restart_policy=policy
        )
        return Json({"Warnings": []})

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/containers/{id}/pause", self.pause),
            Route("POST", "/containers/{id}/unpause", self.unpause),
            Route("GET", "/containers/{id}/top", self.top),
            Route("GET", "/containers/{id}/stats", self.stats),
            Route("POST", "/containers/{id}/update", self.update),
        ]
