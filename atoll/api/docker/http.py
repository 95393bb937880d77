"""Requests and responses of the Docker listener, independent of the socket they travel on.

A handler gets a ``Request`` and returns one of three answers: ``Json`` (a whole body), ``Stream`` (a
chunked body produced as it goes) or ``Hijack`` (take over the connection after the headers: attach
and exec). Errors are raised as ``DockerError`` and rendered as Docker renders them,
``{"message": ...}`` with the status code the Docker client expects.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from atoll.api.docker.streams import ByteReader, ByteWriter


class DockerError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> DockerError:
    return DockerError(400, message)


@dataclass
class Request:
    method: str
    path: str
    """Without the ``/vX.Y`` prefix."""
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Lower-case names; repeated headers joined with ``, ``."""
    body: bytes = b""
    api_version: str = ""
    params: dict[str, str] = field(default_factory=dict)
    """What the route's pattern captured (``{id}``, ``{name}``)."""
    body_stream: AsyncIterator[bytes] | None = None
    """For routes with a streamed body: the body as it arrives (``body`` stays empty)."""

    def chunks(self) -> AsyncIterator[bytes]:
        """The body in chunks, whether it was streamed or read whole."""
        if self.body_stream is not None:
            return self.body_stream
        return _split(self.body)

    async def nonempty_chunks(self, what: str) -> AsyncIterator[bytes]:
        """``chunks()``, with a 400 naming the body when there is none; the check reads only the first
        chunk, so an empty body is refused before anything starts."""
        stream = self.chunks()
        first = b""
        async for chunk in stream:
            if chunk:
                first = chunk
                break
        if not first:
            raise bad_request(f"body: {what} is required")
        return _prepend(first, stream)

    @classmethod
    def parse_query(cls, raw: str) -> dict[str, list[str]]:
        return parse_qs(raw, keep_blank_values=True)

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        """Docker's booleans: ``1``/``true``/``True`` are true; ``0``, ``false`` and empty are false."""
        value = self.arg(name)
        if name not in self.query:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes"):
            return True
        if lowered in ("0", "false", "no", ""):
            return False
        raise bad_request(f"invalid boolean value for {name}: {value!r}")

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        value = self.arg(name)
        if not value:
            return default
        try:
            return int(value)
        except ValueError:
            raise bad_request(f"invalid value for {name}: {value!r} is not an integer") from None

    def json(self) -> Any:
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise bad_request(f"invalid JSON body: {e}") from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise bad_request("the request body must be a JSON object")
        return data

    def filters(self) -> dict[str, list[str]]:
        """Docker's ``filters`` parameter: ``{"key": ["v", ...]}`` or the old ``{"key": {"v": true}}``."""
        raw = self.arg("filters")
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise bad_request(f"invalid filters: {e}") from None
        if not isinstance(data, dict):
            raise bad_request("invalid filters: expected a JSON object")
        out: dict[str, list[str]] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                out[key] = [k for k, v in value.items() if v]
            elif isinstance(value, list):
                out[key] = [str(v) for v in value]
            else:
                raise bad_request(f"invalid filters: {key} must be a list or a map")
        return out


Headers = list[tuple[str, str]]


@dataclass
class Json:
    body: Any
    status: int = 200
    headers: Headers = field(default_factory=list)


@dataclass
class EncodedJson:
    """A ``Json`` answer whose body was serialised already (a big list, off the event loop:
    atoll/api/offload.py); the same bytes on the wire."""

    payload: bytes
    status: int = 200
    headers: Headers = field(default_factory=list)


@dataclass
class Empty:
    """No body: 204, or 200/201 with ``Content-Length: 0`` (HEAD /_ping, for one)."""

    status: int = 204
    headers: Headers = field(default_factory=list)
    text: bytes = b""


@dataclass
class Stream:
    chunks: AsyncIterator[bytes]
    content_type: str = "application/json"
    status: int = 200
    headers: Headers = field(default_factory=list)


class RawStream:
    """A hijacked connection: the bytes the client sent after its request, then the socket itself."""

    def __init__(
        self,
        reader: ByteReader,
        writer: ByteWriter,
        trailing: bytes,
        hold: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._trailing = trailing
        self._hold = hold
        """Awaited before the first write (``headhold.py``)."""

    async def read(self, n: int = 65536) -> bytes:
        if self._trailing:
            first, self._trailing = self._trailing, b""
            return first
        return await self._reader.read(n)

    async def write(self, data: bytes) -> None:
        if self._hold is not None:
            hold, self._hold = self._hold, None
            await hold()
        self._writer.write(data)
        await self._writer.drain()

    async def write_frame(self, stream: int, payload: bytes) -> None:
        """One multiplexed frame (8-byte header, then the payload). Over TLS the header goes out as a
        record of its own: docker-py reads the 8 header bytes, then polls the socket before reading the
        payload, and a payload decrypted together with its header would sit in its TLS buffer where
        that poll never sees it (an attached ``cat`` would hang until more output came)."""
        header = FRAME_HEADER.pack(stream, len(payload))
        if getattr(self._writer, "record_per_write", False):
            await self.write(header)
            await self.write(payload)
        else:
            await self.write(header + payload)

    def close_write(self) -> None:
        """Half-close: the client sees the end of the output while it may still send stdin."""
        if self._writer.can_write_eof():
            self._writer.write_eof()


@dataclass
class Hijack:
    """``101 UPGRADED`` (or 200 for clients that did not ask to upgrade), then ``run`` owns the socket."""

    run: Callable[[RawStream], Awaitable[None]]
    content_type: str = "application/vnd.docker.raw-stream"


Answer = Json | EncodedJson | Empty | Stream | Hijack
Handler = Callable[[Request], Awaitable[Answer]]


BODY_CHUNK = 1 << 20
FRAME_HEADER = struct.Struct(">BxxxI")


async def _split(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), BODY_CHUNK):
        yield data[i : i + BODY_CHUNK]


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk
