"""The calling side of the generic RPC: an object with every method of a protocol, each a request.

``make_proxy(HostAgent, channel)`` returns something that quacks like a ``HostAgent``; callers cast it.
Methods are built from ``shapes.method_shapes``, so a method added to the protocol is callable at once.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from atoll.model.errors import RuntimeFailure
from atoll.wire import frames
from atoll.wire.errors import parse_error, raise_error
from atoll.wire.execwire import RemoteExecProcess
from atoll.wire.server import ARGS_HEADER
from atoll.wire.shapes import MethodShape, decode_result, method_shapes

CONNECT_TIMEOUT = 5.0
"""A peer that does not answer a TCP/TLS handshake in 5 s is down for this call."""

KEEP_ALIVE = 60.0
"""Idle seconds a pooled connection is kept: beyond the heartbeat interval, so beats reuse it."""


class Channel:
    """HTTPS to one peer, verified against the cluster CA and the name the peer's certificate must carry
    (sent as SNI and checked, whatever address the peer is reached at)."""

    def __init__(
        self, base_url: str, ssl_context: ssl.SSLContext, server_name: str, prefix: str = "/rpc"
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ssl_context = ssl_context
        self.server_name = server_name
        self.prefix = prefix
        self._http = httpx.AsyncClient(
            verify=ssl_context,
            timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(keepalive_expiry=KEEP_ALIVE),
        )

    @property
    def peer(self) -> str:
        return f"{self.server_name} at {self.base_url}"

    def url(self, method: str) -> str:
        return f"{self.base_url}{self.prefix}/{method}"

    @property
    def extensions(self) -> dict[str, Any]:
        return {"sni_hostname": self.server_name}

    async def aclose(self) -> None:
        await self._http.aclose()

    def stream(self, method: str, **kwargs: Any) -> Any:
        return self._http.stream("POST", self.url(method), extensions=self.extensions, **kwargs)

    def ws_url(self, method: str) -> str:
        return "wss" + self.url(method).removeprefix("https")


class Unreachable(RuntimeFailure):
    """The peer could not be reached or the connection broke: another peer may answer instead."""


def _unreachable(channel: Channel, e: Exception) -> RuntimeFailure:
    return Unreachable(f"{channel.peer}: cannot reach the peer: {type(e).__name__}: {e}")


def _unary(channel: Channel, shape: MethodShape) -> Callable[..., Any]:
    async def call(_self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs = _bind(shape, args, kwargs)
        body = kwargs.pop(shape.body) if shape.body is not None else None
        headers = {}
        if body is not None:
            headers[ARGS_HEADER] = base64.urlsafe_b64encode(shape.encode_args(kwargs)).decode()
            content: Any = body
        else:
            content = shape.encode_args(kwargs)
        try:
            async with channel.stream(shape.name, content=content, headers=headers) as response:
                data = await response.aread()
        except httpx.HTTPError as e:
            raise _unreachable(channel, e) from e
        if response.status_code != 200:
            parse_error(data, response.status_code, channel.peer)
        return decode_result(shape, data)

    return call


def _stream(channel: Channel, shape: MethodShape) -> Callable[..., Any]:
    async def call(_self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        kwargs = _bind(shape, args, kwargs)
        try:
            async with channel.stream(shape.name, content=shape.encode_args(kwargs)) as response:
                if response.status_code != 200:
                    parse_error(await response.aread(), response.status_code, channel.peer)
                async for line in response.aiter_lines():
                    if line.startswith('{"value"'):
                        yield decode_result(shape, line)
                        continue
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    if "error" in message:
                        raise_error(message["error"], channel.peer)
                    if message.get("end"):
                        return
        except httpx.HTTPError as e:
            raise _unreachable(channel, e) from e
        raise RuntimeFailure(f"{channel.peer}: the stream {shape.name} ended early")

    return call


def _byte_stream(channel: Channel, shape: MethodShape) -> Callable[..., Any]:
    async def call(_self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        kwargs = _bind(shape, args, kwargs)
        try:
            async with channel.stream(shape.name, content=shape.encode_args(kwargs)) as response:
                if response.status_code != 200:
                    parse_error(await response.aread(), response.status_code, channel.peer)
                async for kind, payload in frames.read_frames(response.aiter_raw()):
                    if kind == frames.DATA:
                        yield payload
                    elif kind == frames.ERROR:
                        raise_error(json.loads(payload), channel.peer)
                    else:
                        return
        except httpx.HTTPError as e:
            raise _unreachable(channel, e) from e
        raise RuntimeFailure(f"{channel.peer}: the stream {shape.name} ended early")

    return call


def _exec(channel: Channel, shape: MethodShape) -> Callable[..., Any]:
    async def call(_self: Any, *args: Any, **kwargs: Any) -> RemoteExecProcess:
        kwargs = _bind(shape, args, kwargs)
        return await RemoteExecProcess.open(
            channel.ws_url(shape.name),
            shape.encode_args(kwargs),
            channel.ssl_context,
            channel.server_name,
            channel.peer,
        )

    return call


def _bind(shape: MethodShape, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    names = [n for n in shape.all_params]
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    return bound


BUILDERS = {"unary": _unary, "stream": _stream, "exec": _exec}


def make_proxy(protocol: type, channel: Channel, **attributes: Any) -> Any:
    """An instance of a fresh class with one method per protocol method; ``attributes`` fill the
    protocol's properties (``host_id``), which are local knowledge, not calls."""
    namespace: dict[str, Any] = {
        name: (_byte_stream if shape.raw_bytes else BUILDERS[shape.kind])(channel, shape)
        for name, shape in method_shapes(protocol).items()
    }
    namespace["channel"] = channel
    namespace["__repr__"] = lambda self: f"<remote {protocol.__name__} {channel.peer}>"
    proxy = type(f"Remote{protocol.__name__}", (), namespace)()
    for key, value in attributes.items():
        setattr(proxy, key, value)
    return proxy
