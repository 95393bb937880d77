"""``exec`` over a websocket: the far end's ``ExecProcess``, mirrored message by message.

Client to server: the arguments (text, first), then stdin as binary messages and controls as text
(``{"op": "eof"}``, ``{"op": "resize", "rows": r, "cols": c}``, ``{"op": "kill"}``).
Server to client: ``{"started": true, "pid": N}`` (the host pid) or ``{"error": ...}``; output as
binary messages whose first byte is the stream (1 stdout, 2 stderr); ``{"exit": code}`` last. A
connection that drops kills the process: nobody is left to read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from atoll.model.errors import AtollError, RuntimeFailure
from atoll.model.ports import ExecProcess
from atoll.wire.errors import error_body, raise_error

log = logging.getLogger(__name__)

STREAMS = {"stdout": 1, "stderr": 2}
STREAM_NAMES = {v: k for k, v in STREAMS.items()}


async def serve_exec(ws: WebSocket, start: Callable[[bytes], Awaitable[ExecProcess]]) -> None:
    try:
        first = await ws.receive()
        args = first.get("text") or first.get("bytes") or b""
        proc = await start(args.encode() if isinstance(args, str) else args)
    except WebSocketDisconnect:
        return
    except Exception as e:
        if not isinstance(e, AtollError):
            log.exception("exec failed to start")
        with contextlib.suppress(Exception):
            await ws.send_text(json.dumps({"error": error_body(e)}))
            await ws.close()
        return
    await ws.send_text(json.dumps({"started": True, "pid": await proc.pid()}))
    out_task = asyncio.create_task(_outbound(ws, proc))
    in_task = asyncio.create_task(_inbound(ws, proc))
    try:
        await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
        if in_task.done() or out_task.exception() is not None:
            await proc.kill()
            return
        code = await proc.wait()
        with contextlib.suppress(Exception):
            await ws.send_text(json.dumps({"exit": code}))
            await ws.close()
    finally:
        for task in (out_task, in_task):
            task.cancel()
        await asyncio.gather(out_task, in_task, return_exceptions=True)


async def _outbound(ws: WebSocket, proc: ExecProcess) -> None:
    async for stream, chunk in proc.output():
        if chunk:
            await ws.send_bytes(bytes([STREAMS.get(stream, 1)]) + chunk)


async def _inbound(ws: WebSocket, proc: ExecProcess) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await proc.write(message["bytes"])
            continue
        control = json.loads(message.get("text") or "{}")
        op = control.get("op")
        if op == "eof":
            await proc.close_stdin()
        elif op == "resize":
            await proc.resize(int(control["rows"]), int(control["cols"]))
        elif op == "kill":
            await proc.kill()


class RemoteExecProcess:
    """An ``ExecProcess`` running on another machine. One reader task owns the socket's inbound side."""

    def __init__(self, conn: ClientConnection, peer: str, pid: int = 0) -> None:
        self._conn = conn
        self._peer = peer
        self._pid = pid
        self._output: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls, url: str, args: bytes, ssl_context: ssl.SSLContext, server_hostname: str, peer: str
    ) -> RemoteExecProcess:
        try:
            conn = await connect(
                url, ssl=ssl_context, server_hostname=server_hostname, max_size=None, ping_interval=None
            )
        except (OSError, ConnectionClosed) as e:
            raise RuntimeFailure(f"{peer}: cannot reach the host: {e}") from e
        try:
            await conn.send(args.decode())
            answer = json.loads(await conn.recv())
        except (ConnectionClosed, ValueError) as e:
            await conn.close()
            raise RuntimeFailure(f"{peer}: exec failed to start: {e}") from e
        if "error" in answer:
            await conn.close()
            raise_error(answer["error"], peer)
        return cls(conn, peer, int(answer.get("pid") or 0))

    async def _read(self) -> None:
        try:
            async for message in self._conn:
                if isinstance(message, bytes):
                    if message:
                        self._output.put_nowait((STREAM_NAMES.get(message[0], "stdout"), message[1:]))
                    continue
                control: dict[str, Any] = json.loads(message)
                if "exit" in control:
                    self._exit.set_result(int(control["exit"]))
                    break
        except ConnectionClosed:
            pass
        finally:
            self._output.put_nowait(None)
            if not self._exit.done():
                self._exit.set_exception(RuntimeFailure(f"{self._peer}: the exec connection was lost"))
            await self._conn.close()

    async def _send(self, message: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._conn.send(message)

    async def write(self, data: bytes) -> None:
        await self._send(data)

    async def close_stdin(self) -> None:
        await self._send('{"op":"eof"}')

    async def resize(self, rows: int, cols: int) -> None:
        await self._send(json.dumps({"op": "resize", "rows": rows, "cols": cols}))

    async def output(self) -> AsyncIterator[tuple[str, bytes]]:
        while (item := await self._output.get()) is not None:
            yield item

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    async def kill(self) -> None:
        await self._send('{"op":"kill"}')

    async def pid(self) -> int:
        return self._pid
