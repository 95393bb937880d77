"""Exec over a WebSocket.

The first client message is an ExecStart (JSON text). Then the server sends binary frames of one stream
byte (1 stdout, 2 stderr) and the data; the client sends binary frames of stdin, and text control
messages ``{"resize": [rows, cols]}`` and ``{"eof": true}``. At the end the server sends
``{"exit_code": N}`` and closes; an error is sent as ``{"error": {"code", "message"}}`` before closing.
A client that goes away takes its process with it: the exec is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from atoll.api.deps import Ctl
from atoll.api.errors import status_for, validation_message
from atoll.api.streams import stream_id
from atoll.model.errors import AtollError, InvalidInput
from atoll.model.ports import ExecProcess, ExecSpec
from atoll.schemas import ErrorBody, ErrorResponse, ExecStart
from atoll.services import instances

router = APIRouter(prefix="/v1/projects/{project}/instances", tags=["instances"])

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000


class _ClientGone(Exception):
    pass


async def send_error(ws: WebSocket, error: AtollError) -> None:
    body = ErrorResponse(error=ErrorBody(code=error.code, message=error.message))
    with contextlib.suppress(Exception):
        await ws.send_text(body.model_dump_json())
        # 4000 + HTTP status: application close codes that say what the JSON says.
        await ws.close(code=4000 + status_for(error))


def _as_atoll_error(error: BaseException) -> AtollError:
    if isinstance(error, AtollError):
        return error
    if isinstance(error, WebSocketDisconnect):
        return AtollError("the client went away")
    log.exception("exec stream failed", exc_info=error)
    return AtollError(f"internal error: {type(error).__name__}: {error}")


def _parse_start(message: Mapping[str, Any]) -> ExecStart:
    text = message.get("text")
    if text is None:
        raise InvalidInput("the first message must be an ExecStart JSON text message")
    try:
        return ExecStart.model_validate_json(text)
    except ValidationError as e:
        raise InvalidInput(validation_message(e.errors())) from e


async def _control(proc: ExecProcess, text: str) -> None:
    try:
        msg = json.loads(text)
    except ValueError as e:
        raise InvalidInput(f"control message: not JSON: {e}") from e
    if not isinstance(msg, dict):
        raise InvalidInput("control message: expected an object")
    if "resize" in msg:
        size = msg["resize"]
        if not (
            isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) and n > 0 for n in size)
        ):
            raise InvalidInput("resize: expected [rows, cols] of positive integers")
        await proc.resize(size[0], size[1])
    if msg.get("eof") is True:
        await proc.close_stdin()


async def _inbound(ws: WebSocket, proc: ExecProcess) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            raise _ClientGone
        if message.get("bytes") is not None:
            await proc.write(message["bytes"])
        elif message.get("text") is not None:
            await _control(proc, message["text"])


async def _outbound(ws: WebSocket, proc: ExecProcess) -> None:
    async for stream, chunk in proc.output():
        if chunk:
            await ws.send_bytes(bytes([stream_id(stream)]) + chunk)


async def _pump(ws: WebSocket, proc: ExecProcess) -> None:
    out_task = asyncio.create_task(_outbound(ws, proc))
    in_task = asyncio.create_task(_inbound(ws, proc))
    try:
        await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
        first = in_task if in_task.done() else out_task
        error = first.exception()
        if error is not None or first is in_task:
            await proc.kill()
            if error is not None and not isinstance(error, _ClientGone):
                await send_error(ws, _as_atoll_error(error))
            return
        code = await proc.wait()
        in_task.cancel()
        with contextlib.suppress(Exception):
            await ws.send_text(json.dumps({"exit_code": code}))
            await ws.close(code=CLOSE_NORMAL)
    finally:
        for task in (out_task, in_task):
            task.cancel()
        await asyncio.gather(out_task, in_task, return_exceptions=True)


@router.websocket("/{ref}/exec")
async def exec_instance(ws: WebSocket, ctl: Ctl, project: str, ref: str) -> None:
    await ws.accept()
    try:
        start = _parse_start(await ws.receive())
        spec = ExecSpec(**start.model_dump())
        proc = await instances.exec_start(ctl, project=project, ref=ref, spec=spec)
    except AtollError as e:
        await send_error(ws, e)
        return
    except WebSocketDisconnect:
        return
    await _pump(ws, proc)
