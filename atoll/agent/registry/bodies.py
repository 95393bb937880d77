"""Reading registry answers: bounded bodies. (Layer blobs stream on worker threads: ``blobstream.py``.)"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from atoll.agent.registry.failures import describe
from atoll.model.errors import BadImage, RegistryError

__all__ = ["Progress", "describe", "read_capped"]

Progress = Callable[[int], None]
"""Called with the number of bytes transferred so far."""


async def read_capped(resp: httpx.Response, limit: int, what: str) -> bytes:
    length = resp.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BadImage(f"{what}: {length} bytes is over the {limit}-byte limit")
    parts: list[bytes] = []
    total = 0
    try:
        async for chunk in resp.aiter_raw():
            total += len(chunk)
            if total > limit:
                raise BadImage(f"{what}: over the {limit}-byte limit")
            parts.append(chunk)
    except httpx.TransportError as exc:
        raise RegistryError(f"{what}: the transfer broke off: {describe(exc)}") from exc
    return b"".join(parts)
