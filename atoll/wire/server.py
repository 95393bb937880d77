"""The serving side of the generic RPC: one route per kind, any method of the protocol.

``POST {prefix}/{method}`` takes the arguments as JSON (or, for a method with a streamed parameter, in the
``x-atoll-args`` header with the stream as the body). A unary answer is ``{"value": ...}``; a stream
answer is NDJSON: ``{"value": ...}`` lines, then ``{"end": true}`` or ``{"error": ...}``, so a cut
connection is never mistaken for a finished stream. ``exec`` methods are websockets (see ``execwire``).

``resolve(connection, shape, kwargs)`` returns the object to call; it is where the caller authorises
(e.g. checks that the host id in the arguments is the one in the peer's certificate) by raising an
``AtollError``.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from atoll.model.errors import AtollError, InvalidInput, NotFound
from atoll.wire import frames
from atoll.wire.errors import error_body, error_status
from atoll.wire.execwire import serve_exec
from atoll.wire.shapes import MethodShape, encode_result, method_shapes

log = logging.getLogger(__name__)

ARGS_HEADER = "x-atoll-args"

Resolver = Callable[[HTTPConnection, MethodShape, dict[str, Any]], Any]


def _error_response(exc: BaseException) -> Response:
    if not isinstance(exc, AtollError):
        log.exception("rpc call failed", exc_info=exc)
    return JSONResponse({"error": error_body(exc)}, status_code=error_status(exc))


async def _body_chunks(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def rpc_routes(protocol: type, resolve: Resolver, prefix: str = "/rpc") -> list[BaseRoute]:
    shapes = method_shapes(protocol)

    def shape_of(name: str) -> MethodShape:
        shape = shapes.get(name)
        if shape is None:
            raise NotFound(f"method {name!r} is not part of {protocol.__name__}")
        return shape

    async def call(request: Request) -> Response:
        try:
            shape = shape_of(request.path_params["method"])
            if shape.body is not None:
                kwargs = shape.decode_args(base64.urlsafe_b64decode(request.headers.get(ARGS_HEADER, "")))
                kwargs[shape.body] = _body_chunks(request)
            else:
                kwargs = shape.decode_args(await request.body())
            target = resolve(request, shape, kwargs)
            method = getattr(target, shape.name)
            if shape.kind == "stream":
                if shape.raw_bytes:
                    return StreamingResponse(_frames(shape, method(**kwargs)), media_type=frames.MEDIA_TYPE)
                return StreamingResponse(_stream(shape, method(**kwargs)), media_type="application/x-ndjson")
            if shape.kind == "exec":
                raise NotFound(f"method {shape.name!r} is a websocket")
            result = await method(**kwargs)
        except ClientDisconnect:
            # The caller's request body failed midway (e.g. the image it was relaying broke off).
            return _error_response(InvalidInput("body: the request stream ended early"))
        except Exception as e:
            return _error_response(e)
        return Response(encode_result(shape, result), media_type="application/json")

    async def ws_call(websocket: WebSocket) -> None:
        await websocket.accept()

        async def start(args: bytes) -> Any:
            shape = shape_of(websocket.path_params["method"])
            kwargs = shape.decode_args(args)
            return await getattr(resolve(websocket, shape, kwargs), shape.name)(**kwargs)

        await serve_exec(websocket, start)

    return [
        Route(f"{prefix}/{{method}}", call, methods=["POST"]),
        WebSocketRoute(f"{prefix}/{{method}}", ws_call),
    ]


async def _frames(shape: MethodShape, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            if chunk:
                yield frames.frame(frames.DATA, chunk)
    except Exception as e:
        if not isinstance(e, AtollError):
            log.exception("rpc stream %s failed", shape.name)
        yield frames.error_frame(error_body(e))
        return
    yield frames.frame(frames.END)


async def _stream(shape: MethodShape, items: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    try:
        async for item in items:
            yield encode_result(shape, item) + b"\n"
    except Exception as e:
        if not isinstance(e, AtollError):
            log.exception("rpc stream %s failed", shape.name)
        yield b'{"error":' + _json(error_body(e)) + b"}\n"
        return
    yield b'{"end":true}\n'


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()
