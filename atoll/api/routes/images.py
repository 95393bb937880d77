"""Image routes. References contain "/" and ":", so they are ``{ref:path}`` and come last in each route;
the fixed actions (``import``, ``build``) are matched before them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from atoll.api.deps import Ctl
from atoll.api.errors import ERROR_RESPONSES, validation_message
from atoll.model.errors import InvalidInput
from atoll.schemas import Image, ImageConfigWire, ImageRemoved, ImageTag
from atoll.services import images

router = APIRouter(prefix="/v1/projects/{project}/images", tags=["images"], responses=ERROR_RESPONSES)

TAR_BODY = {
    "requestBody": {"content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}
}


def parse_config(raw: str | None) -> ImageConfigWire:
    if not raw:
        return ImageConfigWire()
    try:
        return ImageConfigWire.model_validate_json(raw)
    except ValidationError as e:
        errors = [{**err, "loc": ("config", *err["loc"])} for err in e.errors()]
        raise InvalidInput(validation_message(errors)) from e


@router.get("")
async def list_images(ctl: Ctl, project: str) -> list[Image]:
    return images.list_images(ctl, project=project)


@router.post("/import", openapi_extra=TAR_BODY)
async def import_images(ctl: Ctl, project: str, request: Request) -> list[Image]:
    """Import a ``docker save`` or OCI image-layout tar, streamed as the request body."""
    return await images.import_images(ctl, project=project, chunks=request.stream())


@router.post("/build", status_code=201, openapi_extra=TAR_BODY)
async def build_image(
    ctl: Ctl,
    project: str,
    request: Request,
    tag: Annotated[str | None, Query(description="NAME[:TAG]")] = None,
    config: Annotated[str | None, Query(description="JSON of ImageConfigWire")] = None,
) -> Image:
    """Make a one-layer image from a root filesystem tar, streamed as the request body."""
    cfg = parse_config(config)
    return await images.build_image(ctl, project=project, chunks=request.stream(), tag=tag, config=cfg)


@router.get("/{ref:path}")
async def get_image(ctl: Ctl, project: str, ref: str) -> Image:
    return images.get_image(ctl, project=project, ref=ref)


@router.post("/{ref:path}/tag")
async def tag_image(ctl: Ctl, project: str, ref: str, body: ImageTag) -> Image:
    return images.tag_image(ctl, project=project, ref=ref, tag=body.tag)


@router.delete("/{ref:path}")
async def remove_image(ctl: Ctl, project: str, ref: str, force: bool = False) -> ImageRemoved:
    return await images.remove_image(ctl, project=project, ref=ref, force=force)
