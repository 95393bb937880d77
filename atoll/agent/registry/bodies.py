"""Reading registry answers: bounded bodies, and downloads that survive broken connections.

A ``Sink`` is where one blob download goes: the file, its running sha256 and byte count, kept across
attempts so a resumed transfer (``Range``) continues the same hash. Bytes are gathered into 4 MiB
batches that are written and hashed in a worker thread, keeping the event loop free for the other
parallel downloads.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any, BinaryIO

import httpx

from atoll.model.errors import BadImage, RegistryError

WRITE_BATCH = 4 << 20
"""Downloaded bytes are gathered to this size, then written and hashed in a worker thread."""

Progress = Callable[[int], None]
"""Called with the number of bytes transferred so far."""


class Transient(Exception):
    """A failure worth another attempt (a broken connection, a body that ended early)."""


def describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def range_start(resp: httpx.Response) -> int:
    value = resp.headers.get("content-range", "")  # "bytes 100-199/200"
    try:
        return int(value.split(" ", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return -1


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


class Sink:
    """Where a download goes: the file, the running hash and count, kept across resumed attempts."""

    def __init__(self, f: BinaryIO, progress: Progress) -> None:
        self.f = f
        self.progress = progress
        self.hasher = hashlib.sha256()
        self.got = 0

    def restart(self) -> None:
        if self.got:
            self.f.seek(0)
            self.f.truncate()
            self.hasher, self.got = hashlib.sha256(), 0

    async def drain(self, resp: httpx.Response, size: int | None, what: str) -> None:
        """Append the body. Raises Transient if the transfer is cut off (what arrived is kept)."""
        batch: list[bytes] = []
        pending = 0
        try:
            async for chunk in resp.aiter_raw():
                if size is not None and self.got + pending + len(chunk) > size:
                    raise BadImage(f"{what}: the registry sent more than the {size} bytes the manifest says")
                batch.append(chunk)
                pending += len(chunk)
                if pending >= WRITE_BATCH:
                    await self._write(batch)
                    batch, pending = [], 0
        except (httpx.TransportError, httpx.StreamError):
            await self._write(batch)
            raise Transient() from None
        await self._write(batch)
        if size is not None and self.got < size:
            raise Transient()  # the server ended early without an error: resume

    async def _write(self, batch: list[bytes]) -> None:
        if batch:
            await asyncio.to_thread(_write, self.f, self.hasher, batch)
            self.got += sum(len(c) for c in batch)
            self.progress(self.got)


def _write(f: BinaryIO, hasher: Any, batch: list[bytes]) -> None:
    for chunk in batch:
        f.write(chunk)
        hasher.update(chunk)
