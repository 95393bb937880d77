"""Shortcuts that drive the API the way a client would."""

from __future__ import annotations

from typing import Any

import httpx

from .fakes import image_archive, image_record

P = "/v1/projects/default"


def error_of(resp: httpx.Response, status: int) -> dict[str, str]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    err: dict[str, str] = body["error"]
    return err


async def import_image(
    client: httpx.AsyncClient, n: int | str = 1, *, project: str = "default", **kw: Any
) -> dict[str, Any]:
    resp = await client.post(
        f"/v1/projects/{project}/images/import", content=image_archive(image_record(n, **kw))
    )
    assert resp.status_code == 200, resp.text
    images: list[dict[str, Any]] = resp.json()
    return images[0]


async def create_instance(
    client: httpx.AsyncClient, *, project: str = "default", **body: Any
) -> dict[str, Any]:
    body.setdefault("image", "busybox")
    resp = await client.post(f"/v1/projects/{project}/instances", json=body)
    assert resp.status_code == 201, resp.text
    instance: dict[str, Any] = resp.json()
    return instance


async def run_instance(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    inst = await create_instance(client, **body)
    resp = await client.post(f"{P}/instances/{inst['id']}/start")
    assert resp.status_code == 200, resp.text
    started: dict[str, Any] = resp.json()
    return started
