"""Registry routes: pull and push (streamed as NDJSON progress), prune, and per-project logins.

A transfer's answer starts once the agent reports its first event, so what fails early (a bad
reference, a missing image, an auth failure, a registry that is down) is an ordinary error response.
Later failures end the stream with a line carrying ``error``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from atoll.api.deps import Ctl
from atoll.api.errors import ERROR_RESPONSES
from atoll.model.errors import AtollError
from atoll.schemas import (
    ErrorBody,
    ImagePull,
    ImagePush,
    ImagesPruned,
    RegistryLogin,
    RegistryLoginView,
    TransferProgress,
)
from atoll.services import prune, registry

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/projects/{project}", responses=ERROR_RESPONSES)

NDJSON = "application/x-ndjson"
STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {NDJSON: {"schema": TransferProgress.model_json_schema()}}}
}


async def ndjson(events: AsyncIterator[TransferProgress]) -> StreamingResponse:
    try:
        first = await anext(events)
    except StopAsyncIteration:
        first = None

    async def body() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield first.model_dump_json(exclude_none=True).encode() + b"\n"
            async for event in events:
                yield event.model_dump_json(exclude_none=True).encode() + b"\n"
        except AtollError as exc:
            log.warning("transfer failed: %s", exc.message)
            end = TransferProgress(status="error", error=ErrorBody(code=exc.code, message=exc.message))
            yield end.model_dump_json(exclude_none=True).encode() + b"\n"
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(body(), media_type=NDJSON)


@router.post("/images/pull", tags=["images"], response_class=StreamingResponse, responses=STREAM)
async def pull_image(ctl: Ctl, project: str, body: ImagePull) -> StreamingResponse:
    """Pull an image from its registry (or a mirror); NDJSON progress, ending with the image."""
    return await ndjson(registry.pull_image(ctl, project=project, reference=body.reference))


@router.post("/images/push", tags=["images"], response_class=StreamingResponse, responses=STREAM)
async def push_image(ctl: Ctl, project: str, body: ImagePush) -> StreamingResponse:
    """Push a local image to the registry its name points at; NDJSON progress, ending with the digest."""
    return await ndjson(registry.push_image(ctl, project=project, reference=body.reference))


@router.post("/images/prune", tags=["images"])
async def prune_images(ctl: Ctl, project: str, all: bool = False) -> ImagesPruned:
    """Remove dangling images (untagged, unused), or with ``all`` every image no instance uses."""
    return await prune.prune_images(ctl, project=project, all=all)


@router.get("/registry-logins", tags=["registries"])
async def list_logins(ctl: Ctl, project: str) -> list[RegistryLoginView]:
    return registry.list_logins(ctl, project=project)


@router.post("/registry-logins", tags=["registries"], status_code=201)
async def login(ctl: Ctl, project: str, body: RegistryLogin) -> RegistryLoginView:
    """Check a login against the registry and keep it for the project. The password is never shown back."""
    return await registry.login(
        ctl, project=project, registry=body.registry, username=body.username, password=body.password
    )


@router.delete("/registry-logins/{registry_host}", tags=["registries"], status_code=204)
async def logout(ctl: Ctl, project: str, registry_host: str) -> Response:
    registry.logout(ctl, project=project, registry=registry_host)
    return Response(status_code=204)
