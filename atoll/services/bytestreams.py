"""Byte streams a host produces for a client (archives): started before the answer is."""

from __future__ import annotations

from collections.abc import AsyncIterator


async def started(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Pull the first chunk now, so an error the host finds at once (a missing path or image) is raised
    here, before a response has begun; the returned stream yields everything."""
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        first = b""

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in stream:
            yield chunk

    return rest()
