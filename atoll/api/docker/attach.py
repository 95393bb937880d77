"""Output streams: ``logs`` (a chunked body) and ``attach`` (a hijacked connection).

Without a TTY, output is multiplexed in Docker's 8-byte-header frames; with one it is raw. Attach is
usually made before the container starts (``docker run``): it waits for the start, then follows the
log from the moment it attached, so output written before it began following is not lost. Stdin from
the client goes to the container's stdin when it was created with ``OpenStdin``; the client closing
its side closes the container's stdin (Docker's StdinOnce).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from atoll.api.docker.containers import PROJECT, Containers
from atoll.api.docker.detach import DetachScanner, parse_keys
from atoll.api.docker.http import DockerError, Empty, Hijack, RawStream, Request, Stream, bad_request
from atoll.api.docker.router import Route
from atoll.api.streams import frame, stream_id
from atoll.model.errors import AtollError
from atoll.model.instance import LogEntry
from atoll.schemas import Instance
from atoll.services import instances, lifecycle, stdin, watch
from atoll.services.clock import now_iso, parse_iso
from atoll.services.exits import record_activity

RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"


def unix_or_iso(value: str, field: str) -> float | None:
    if not value or value == "0":
        return None
    try:
        return float(value)
    except ValueError:
        parsed = parse_iso(value)
        if parsed is None:
            raise bad_request(
                f"{field}: {value!r} is neither a unix timestamp nor an RFC 3339 time"
            ) from None
        return parsed.timestamp()


def encode(entry: LogEntry, tty: bool, timestamps: bool = False) -> bytes:
    payload = (entry.time.encode() + b" " + entry.data) if timestamps else entry.data
    return payload if tty else frame(stream_id(entry.stream), payload)


async def send_entry(raw: RawStream, entry: LogEntry, tty: bool) -> None:
    if tty:
        await raw.write(entry.data)
    else:
        await raw.write_frame(stream_id(entry.stream), entry.data)


class Output:
    def __init__(self, containers: Containers) -> None:
        self.containers = containers
        self.ctl = containers.ctl

    async def logs(self, req: Request) -> Stream:
        inst = self.containers.get(req.params["id"])
        want = {name for name in ("stdout", "stderr") if req.flag(name)}
        if not want:
            raise bad_request("You must choose at least one stream")
        tail_text = req.arg("tail", "all")
        tail = None if tail_text in ("all", "") else req.int_arg("tail")
        if tail is not None and tail < 0:
            tail = None
        since = unix_or_iso(req.arg("since"), "since")
        until = unix_or_iso(req.arg("until"), "until")
        timestamps, tty = req.flag("timestamps"), inst.process.tty
        entries = instances.logs(
            self.ctl,
            project=PROJECT,
            ref=inst.id,
            follow=req.flag("follow"),
            tail=tail,
            since=f"{since:.9f}" if since is not None else "",
        )

        async def chunks() -> AsyncIterator[bytes]:
            async for entry in entries:
                if until is not None:
                    at = parse_iso(entry.time)
                    if at is not None and at.timestamp() > until:
                        break
                if entry.stream in want and entry.data:
                    yield encode(entry, tty, timestamps)

        return Stream(chunks(), content_type=RAW if tty else MULTIPLEXED)

    async def attach(self, req: Request) -> Hijack:
        inst = self.containers.get(req.params["id"])
        want = {name for name in ("stdout", "stderr") if req.flag(name)}
        with_stdin, replay, follow = req.flag("stdin"), req.flag("logs"), req.flag("stream")
        keys = parse_keys(req.arg("detachKeys"))
        attached_at = now_iso()
        record_activity(self.ctl, "attach", inst)  # as dockerd logs every attach, before the stream

        async def run(raw: RawStream) -> None:
            out = asyncio.ensure_future(self._output(raw, inst, want, replay, follow, attached_at))
            inp = asyncio.ensure_future(self._input(raw, inst, with_stdin, attached_at, keys))
            try:
                done, _ = await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
                detached = inp in done and not inp.cancelled() and inp.exception() is None and inp.result()
                if detached or (inp in done and not want):
                    out.cancel()  # detached, or nothing to send to a client that is done
                    with contextlib.suppress(BaseException):
                        await out
                    return
                await out
            finally:
                inp.cancel()
                with contextlib.suppress(BaseException):
                    await inp

        return Hijack(run, content_type=RAW if inst.process.tty else MULTIPLEXED)

    async def _output(
        self, raw: RawStream, inst: Instance, want: set[str], replay: bool, follow: bool, attached_at: str
    ) -> None:
        tty = inst.process.tty
        if replay:
            for entry in [e async for e in instances.logs(self.ctl, project=PROJECT, ref=inst.id)]:
                if entry.stream in want and entry.data:
                    await send_entry(raw, entry, tty)
        if not follow:
            return
        if not await watch.wait_started(self.ctl, project=PROJECT, ref=inst.id, since=attached_at):
            return
        if not want:
            # Only stdin attached: the connection lasts while the container runs (or until the client
            # goes or detaches), as with dockerd, not just as long as there is no output to send.
            with contextlib.suppress(AtollError):
                await lifecycle.wait(self.ctl, project=PROJECT, ref=inst.id, condition="not-running")
            return
        entries = instances.logs(self.ctl, project=PROJECT, ref=inst.id, follow=True, since=attached_at)
        try:
            async for entry in entries:
                if entry.stream in want and entry.data:
                    await send_entry(raw, entry, tty)
        except AtollError:
            return

    async def _input(
        self, raw: RawStream, inst: Instance, with_stdin: bool, attached_at: str, keys: bytes
    ) -> bool:
        """Client bytes to the container's stdin, once it runs (until then they wait in the socket);
        without stdin they are read and dropped, so the client's end of the connection never blocks.
        Returns True when the client typed the detach keys (TTY containers)."""
        forward = with_stdin and inst.process.stdin
        if forward and not await watch.wait_started(
            self.ctl, project=PROJECT, ref=inst.id, since=attached_at
        ):
            return False
        scanner = DetachScanner(keys) if forward and inst.process.tty else None
        while True:
            data = await raw.read()
            if not data:
                break
            detached = False
            if scanner is not None:
                data, detached = scanner.feed(data)
            if forward and data:
                await stdin.write(self.ctl, project=PROJECT, ref=inst.id, data=data)
            if detached:
                return True
        if forward:
            await stdin.close(self.ctl, project=PROJECT, ref=inst.id)
        return False

    async def resize(self, req: Request) -> Empty:
        inst = self.containers.get(req.params["id"])
        rows, cols = req.int_arg("h", 0) or 0, req.int_arg("w", 0) or 0
        if rows <= 0 or cols <= 0:
            raise bad_request("h and w: must be positive integers")
        if inst.status != "running":
            raise DockerError(409, f"Container {inst.id} is not running")
        await stdin.resize(self.ctl, project=PROJECT, ref=inst.id, rows=rows, cols=cols)
        return Empty(200)

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/containers/{id}/resize", self.resize),
            Route("GET", "/containers/{id}/logs", self.logs),
            Route("POST", "/containers/{id}/attach", self.attach),
        ]
