from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter

from atoll.api.deps import Ctl
from atoll.api.errors import ERROR_RESPONSES
from atoll.api.offload import json_list, off_loop
from atoll.api.streams import log_frames
from atoll.schemas import LOG_MEDIA_TYPE, Instance, InstanceCreate, WaitResult
from atoll.services import instances, lifecycle
from atoll.services.lifecycle import WaitCondition

router = APIRouter(prefix="/v1/projects/{project}/instances", tags=["instances"], responses=ERROR_RESPONSES)

Timeout = Annotated[float | None, Query(ge=0, description="seconds before SIGKILL")]


@router.post("", status_code=201)
async def create_instance(ctl: Ctl, project: str, body: InstanceCreate) -> Instance:
    return await instances.create(ctl, project=project, request=body)


INSTANCE_LIST = TypeAdapter(list[Instance])


@router.get("", response_model=list[Instance])
async def list_instances(
    ctl: Ctl,
    project: str,
    all_: Annotated[bool, Query(alias="all", description="include instances that are not running")] = False,
    label: Annotated[list[str] | None, Query(description="key or key=value; all must match")] = None,
    name: Annotated[list[str] | None, Query(description="substring of the name; any may match")] = None,
    status: Annotated[
        list[str] | None, Query(description="created, running, restarting, exited, dead")
    ] = None,
) -> Response:
    # Thousands of rows take seconds: query, views and JSON are made off the event loop (offload.py),
    # the JSON as FastAPI makes it for a ``list[Instance]`` answer.
    def answer() -> bytes:
        batches = instances.instance_batches(
            ctl, project=project, all=all_, label=label, name=name, status=status
        )
        return json_list(INSTANCE_LIST, batches)

    return Response(await off_loop(answer), media_type="application/json")


@router.get("/{ref}")
async def get_instance(ctl: Ctl, project: str, ref: str) -> Instance:
    return instances.get(ctl, project=project, ref=ref)


@router.post("/{ref}/start")
async def start_instance(ctl: Ctl, project: str, ref: str) -> Instance:
    return await lifecycle.start(ctl, project=project, ref=ref)


@router.post("/{ref}/stop")
async def stop_instance(ctl: Ctl, project: str, ref: str, timeout: Timeout = None) -> Instance:
    return await lifecycle.stop(ctl, project=project, ref=ref, timeout=timeout)


@router.post("/{ref}/restart")
async def restart_instance(ctl: Ctl, project: str, ref: str, timeout: Timeout = None) -> Instance:
    return await lifecycle.restart(ctl, project=project, ref=ref, timeout=timeout)


@router.post("/{ref}/kill")
async def kill_instance(ctl: Ctl, project: str, ref: str, signal: str = "SIGKILL") -> Instance:
    return await lifecycle.kill(ctl, project=project, ref=ref, signal=signal)


@router.post("/{ref}/wait")
async def wait_instance(
    ctl: Ctl, project: str, ref: str, condition: WaitCondition = "not-running"
) -> WaitResult:
    return await lifecycle.wait(ctl, project=project, ref=ref, condition=condition)


@router.delete("/{ref}", status_code=204)
async def remove_instance(
    ctl: Ctl, project: str, ref: str, force: bool = False, volumes: bool = False
) -> Response:
    await instances.remove(ctl, project=project, ref=ref, force=force, volumes=volumes)
    return Response(status_code=204)


@router.get(
    "/{ref}/logs",
    response_class=StreamingResponse,
    responses={200: {"content": {LOG_MEDIA_TYPE: {}}, "description": "Docker-framed log stream"}},
)
async def instance_logs(
    ctl: Ctl,
    project: str,
    ref: str,
    follow: bool = False,
    tail: Annotated[int | None, Query(ge=0)] = None,
    since: str = "",
    timestamps: bool = False,
) -> StreamingResponse:
    entries = instances.logs(ctl, project=project, ref=ref, follow=follow, tail=tail, since=since)
    return StreamingResponse(log_frames(entries, timestamps), media_type=LOG_MEDIA_TYPE)
