"""An HTTP/1.1 server for the Docker API on asyncio and h11.

Why not uvicorn: attach and exec *hijack* the connection (``Connection: Upgrade``, ``Upgrade: tcp``,
``101 UPGRADED``, then a raw two-way stream), which uvicorn refuses; h11 is sans-I/O, so after the 101
the socket and ``conn.trailing_data`` (stdin the client sent right behind its request) are ours.

Per connection: read a request and its whole body, run the handler while watching for the client
going away (a blocked ``wait`` or a followed log ends with its client), write the answer, and keep the
connection alive for the next request unless either side asked to close. Routes marked
``streamed_body`` (image archives, ``docker cp`` in) get their body as it arrives instead, with no cap:
the handler reads ``Request.chunks()`` and a client that hangs up ends that stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from pathlib import Path

import h11
from h11 import MIGHT_SWITCH_PROTOCOL  # type: ignore[attr-defined]  # public, missing from __all__

from atoll import __version__
from atoll.api.docker.headhold import hold_for
from atoll.api.docker.http import (
    Answer,
    DockerError,
    Empty,
    EncodedJson,
    Headers,
    Hijack,
    Json,
    RawStream,
    Request,
    Stream,
)
from atoll.api.docker.router import API_VERSION, Router, split_version
from atoll.api.docker.streams import ByteReader, ByteWriter
from atoll.api.docker.tls import accept as accept_tls

log = logging.getLogger(__name__)

MAX_BODY = 64 << 20
"""Whole bodies are read into memory (JSON configs of a few KiB); archives are streamed instead."""

READ_SIZE = 1 << 16

ErrorMapper = Callable[[BaseException], DockerError | None]


def common_headers() -> Headers:
    return [
        ("Server", f"Atoll/{__version__} (linux)"),
        ("Api-Version", API_VERSION),
        ("Docker-Experimental", "false"),
        ("Ostype", "linux"),
    ]


def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def error_json(error: DockerError) -> Json:
    return Json({"message": error.message}, status=error.status)


class _ClientGone(Exception):
    pass


class Connection:
    def __init__(
        self,
        reader: ByteReader,
        writer: ByteWriter,
        router: Router,
        map_error: ErrorMapper,
        max_body: int = MAX_BODY,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.router = router
        self.map_error = map_error
        self.max_body = max_body
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=READ_SIZE * 4)
        self.busy = False
        """Between a request's first line and the end of its answer: a closing server lets it finish."""
        self.closing = False
        """The server is closing: end the connection after the answer under way."""

    async def _next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.reader.read(READ_SIZE))
                continue
            return event  # type: ignore[return-value]

    async def _send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def serve(self) -> None:
        try:
            while True:
                request = await self._read_request()
                if request is None:
                    return
                answer = await self._answer(request)
                await self._drain(request)
                if isinstance(answer, Hijack):
                    await self._hijack(request, answer)
                    return
                await self._respond(request, answer)
                self.busy = False
                if self.closing:
                    return
                if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is not h11.DONE:
                    return
                self.conn.start_next_cycle()
        except (_ClientGone, ConnectionError, h11.RemoteProtocolError):
            return
        finally:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def _read_request(self) -> Request | None:
        event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            return None
        self.busy = True
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        target = event.target.decode("latin-1")
        path, _, query = target.partition("?")
        if self._streams_body(event.method.decode("ascii"), path, headers):
            return Request(
                method=event.method.decode("ascii"),
                path=path,
                query=Request.parse_query(query),
                headers=headers,
                body_stream=self._body_stream(),
            )
        body = bytearray()
        while True:
            part = await self._next_event()
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > self.max_body:
                    too_large = DockerError(413, f"request body over {self.max_body} bytes")
                    await self._respond_now(error_json(too_large))
                    raise _ClientGone
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                raise _ClientGone
        return Request(
            method=event.method.decode("ascii"),
            path=path,
            query=Request.parse_query(query),
            headers=headers,
            body=bytes(body),
        )

    def _streams_body(self, method: str, path: str, headers: dict[str, str]) -> bool:
        has_body = "chunked" in headers.get("transfer-encoding", "").lower() or headers.get(
            "content-length", "0"
        ).strip() not in ("", "0")
        if not has_body:
            return False
        try:
            return self.router.streams_body(method, split_version(path)[0])
        except DockerError:
            return False  # a bad version: answered as usual

    async def _body_stream(self) -> AsyncIterator[bytes]:
        while True:
            part = await self._next_event()
            if isinstance(part, h11.Data):
                yield bytes(part.data)
            elif isinstance(part, h11.EndOfMessage):
                return
            else:
                raise _ClientGone

    async def _drain(self, request: Request) -> None:
        """Read away what a handler left of a streamed body (it failed before reading it all) and
        discard it: a client still sending would otherwise hit a closed socket instead of reading the
        error, as the Docker CLI does ("broken pipe")."""
        if request.body_stream is None or self.conn.their_state is not h11.SEND_BODY:
            return
        async for _ in request.body_stream:
            pass

    async def _respond_now(self, answer: Json) -> None:
        """An error before the request was read to its end; the connection closes after it."""
        payload = json.dumps(answer.body).encode()
        headers = [*common_headers(), ("Content-Type", "application/json"), ("Connection", "close")]
        headers.append(("Content-Length", str(len(payload))))
        with contextlib.suppress(h11.LocalProtocolError):
            await self._send(
                h11.Response(status_code=answer.status, headers=headers, reason=reason(answer.status))
            )
            await self._send(h11.Data(data=payload))
            await self._send(h11.EndOfMessage())

    async def _answer(self, request: Request) -> Answer:
        try:
            request.path, request.api_version = split_version(request.path)
            handler, request.params = self.router.match(request.method, request.path)
            if self._upgrade_requested(request) or request.body_stream is not None:
                # The handler reads the socket itself (a hijack or a streamed body): no watcher.
                return await handler(request)
            return await self._while_connected(handler(request))
        except _ClientGone:
            raise
        except Exception as e:
            error = e if isinstance(e, DockerError) else self.map_error(e)
            if error is None:
                log.exception("docker API %s %s failed", request.method, request.path)
                error = DockerError(500, f"internal error: {type(e).__name__}: {e}")
            return error_json(error)

    def _upgrade_requested(self, request: Request) -> bool:
        return self.conn.their_state is MIGHT_SWITCH_PROTOCOL or "upgrade" in request.headers

    async def _while_connected(self, work: Awaitable[Answer]) -> Answer:
        """Run ``work``; if the client hangs up meanwhile, cancel it. Bytes a client pipelines behind
        its request are kept for the next cycle."""
        task = asyncio.ensure_future(work)
        watcher = asyncio.ensure_future(self.reader.read(READ_SIZE))
        try:
            done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if task not in done:
                data = watcher.result()
                if not data:
                    raise _ClientGone
                self.conn.receive_data(data)
            return await task
        finally:
            task.cancel()
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher

    async def _respond(self, request: Request, answer: Answer) -> None:
        headers = common_headers()
        head = request.method == "HEAD"
        if isinstance(answer, Json | EncodedJson):
            body = answer.payload if isinstance(answer, EncodedJson) else json.dumps(answer.body).encode()
            payload = body + b"\n"
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
            await self._send(
                h11.Response(
                    status_code=answer.status, headers=headers + answer.headers, reason=reason(answer.status)
                )
            )
            if not head:
                await self._send(h11.Data(data=payload))
        elif isinstance(answer, Empty):
            if answer.status != 204:
                headers += [("Content-Length", str(len(answer.text)))]
            await self._send(
                h11.Response(
                    status_code=answer.status, headers=headers + answer.headers, reason=reason(answer.status)
                )
            )
            if answer.text and not head:
                await self._send(h11.Data(data=answer.text))
        elif isinstance(answer, Stream):
            await self._stream(answer, headers)
        await self._send(h11.EndOfMessage())

    async def _stream(self, answer: Stream, headers: Headers) -> None:
        headers += [("Content-Type", answer.content_type)]
        await self._send(
            h11.Response(
                status_code=answer.status, headers=headers + answer.headers, reason=reason(answer.status)
            )
        )
        chunks = answer.chunks

        async def pump() -> Answer:
            async for chunk in chunks:
                if chunk:
                    await self._send(h11.Data(data=chunk))
            return Empty()

        try:
            await self._while_connected(pump())
        except _ClientGone:
            raise
        except Exception:
            # Headers are out: an error can only end the stream early, as with dockerd.
            log.exception("docker API stream ended early")
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _hijack(self, request: Request, answer: Hijack) -> None:
        upgrade = self.conn.their_state is MIGHT_SWITCH_PROTOCOL
        if upgrade:
            await self._send(
                h11.InformationalResponse(
                    status_code=101,
                    headers=[
                        *common_headers(),
                        ("Content-Type", answer.content_type),
                        ("Connection", "Upgrade"),
                        ("Upgrade", "tcp"),
                    ],
                    reason=b"UPGRADED",
                )
            )
            trailing, _ = self.conn.trailing_data
        else:
            # A client that did not ask to upgrade gets the raw stream after a 200, as dockerd does.
            trailing, _ = self.conn.trailing_data
            lines = ["HTTP/1.1 200 OK", *(f"{k}: {v}" for k, v in common_headers())]
            lines.append(f"Content-Type: {answer.content_type}")
            self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            await self.writer.drain()
        hold = hold_for(request.headers.get("user-agent", ""), self.writer)
        stream = RawStream(self.reader, self.writer, trailing, hold)
        try:
            await answer.run(stream)
        except (ConnectionError, _ClientGone):
            pass
        except Exception:
            log.exception("docker API hijacked stream failed: %s %s", request.method, request.path)


class DockerServer:
    """Listens on any number of unix and tcp addresses; each connection is served by ``Connection``."""

    def __init__(self, router: Router, map_error: ErrorMapper, max_body: int = MAX_BODY) -> None:
        self.router = router
        self.map_error = map_error
        self.max_body = max_body
        self._servers: list[asyncio.Server] = []
        self._connections: dict[asyncio.Task[None], Connection | None] = {}
        """Connection tasks, with their HTTP connection once it is there (after the TLS handshake)."""

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: ssl.SSLContext | None = None
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = None
        try:
            streams: tuple[ByteReader, ByteWriter] | None = (reader, writer)
            if tls is not None:
                streams = await accept_tls(reader, writer, tls)
            if streams is None:
                writer.close()
                return
            connection = Connection(*streams, self.router, self.map_error, self.max_body)
            self._connections[task] = connection
            await connection.serve()
        except asyncio.CancelledError:
            pass  # closing the server: asyncio would log a cancelled connection task as an error
        finally:
            self._connections.pop(task, None)

    async def listen(self, address: str, tls: ssl.SSLContext | None = None) -> None:
        """``unix:///path/docker.sock`` or ``tcp://host:port``; with ``tls``, every connection is TLS
        (``tls.py``; the context decides whether clients must show a certificate)."""
        if address.startswith("unix://"):
            path = Path(address.removeprefix("unix://"))
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            server = await asyncio.start_unix_server(self._on_connection, path=str(path))
            os.chmod(path, 0o660)
        elif address.startswith("tcp://"):
            host, _, port = address.removeprefix("tcp://").rpartition(":")
            server = await asyncio.start_server(
                functools.partial(self._on_connection, tls=tls), host=host or "127.0.0.1", port=int(port)
            )
        else:
            raise ValueError(f"docker listener: {address!r} is neither unix:// nor tcp://")
        self._servers.append(server)
        log.info("Docker API listening on %s%s", address, " (TLS)" if tls is not None else "")

    def stop_listening(self) -> None:
        """Accept no more connections (``close`` still serves the ones already here)."""
        for server in self._servers:
            server.close()

    async def close(self, grace: float = 0.0) -> None:
        """Stop listening, end idle connections, give requests under way ``grace`` seconds to be
        answered (each connection closes after its answer), then end what is left (a followed log, an
        attach)."""
        self.stop_listening()
        busy = []
        for task, connection in list(self._connections.items()):
            if grace > 0 and connection is not None and connection.busy:
                connection.closing = True
                busy.append(task)
            else:
                task.cancel()
        if busy:
            await asyncio.wait(busy, timeout=grace)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
