"""Exec: ``POST /containers/{id}/exec`` makes a record, ``POST /exec/{id}/start`` runs it over a hijacked
connection (or detached), ``GET /exec/{id}/json`` tells its exit code, ``POST /exec/{id}/resize``.

Records live in this process's memory, as in dockerd (exec ids do not survive a daemon restart). The
process runs through the native exec service; its output is framed like attach's.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from atoll.api.docker.containers import PROJECT, Containers
from atoll.api.docker.create import is_zero
from atoll.api.docker.detach import DetachScanner, parse_keys
from atoll.api.docker.http import DockerError, Empty, Hijack, Json, RawStream, Request, bad_request
from atoll.api.docker.router import Route
from atoll.api.streams import stream_id
from atoll.model.ports import ExecProcess, ExecSpec
from atoll.services import instances

MAX_RECORDS = 1000
EXEC_FIELDS = {
    "AttachStdin", "AttachStdout", "AttachStderr", "Tty", "Cmd", "Env", "WorkingDir", "User",
    "DetachKeys", "detachKeys", "ConsoleSize", "Detach",
    "Container",  # docker-py repeats the path's id
}  # fmt: skip


@dataclass
class ExecRecord:
    id: str
    container_id: str
    spec: ExecSpec
    attach_stdout: bool
    attach_stderr: bool
    running: bool = False
    exit_code: int | None = None
    proc: ExecProcess | None = None
    started: bool = False
    detach_keys: bytes = b""
    pid_task: asyncio.Future[int] | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class Execs:
    def __init__(self, containers: Containers) -> None:
        self.containers = containers
        self.ctl = containers.ctl
        self.records: dict[str, ExecRecord] = {}

    def _record(self, exec_id: str) -> ExecRecord:
        record = self.records.get(exec_id)
        if record is None:
            raise DockerError(404, f"No such exec instance: {exec_id}")
        return record

    async def create(self, req: Request) -> Json:
        inst = self.containers.get(req.params["id"])
        body = req.json_object()
        for key, value in body.items():
            if key not in EXEC_FIELDS and not is_zero(value):
                raise bad_request(f"{key}: not supported by Atoll yet (got {value!r})")
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
            raise bad_request("Cmd: no exec command specified")
        if inst.status != "running":
            raise DockerError(409, f"container {inst.id} is not running")
        if inst.paused:
            raise DockerError(409, f"Container {inst.id} is paused, unpause the container before exec")
        keys = body.get("detachKeys") or body.get("DetachKeys") or ""
        if not isinstance(keys, str):
            raise bad_request("detachKeys: expected a string")
        detach_keys = parse_keys(keys)  # a 400 naming the field when it is not Docker's format
        spec = ExecSpec(
            args=cmd,
            env=list(body.get("Env") or []),
            cwd=body.get("WorkingDir") or "",
            user=body.get("User") or "",
            tty=bool(body.get("Tty")),
            stdin=bool(body.get("AttachStdin")),
        )
        if len(self.records) >= MAX_RECORDS:
            for old in [r for r in self.records.values() if r.started and not r.running][: MAX_RECORDS // 2]:
                del self.records[old.id]
        record = ExecRecord(
            id=secrets.token_hex(32),
            container_id=inst.id,
            spec=spec,
            attach_stdout=body.get("AttachStdout", True) is not False,
            attach_stderr=body.get("AttachStderr", True) is not False,
            detach_keys=detach_keys,
        )
        self.records[record.id] = record
        return Json({"Id": record.id}, status=201)

    async def _begin(self, record: ExecRecord) -> ExecProcess:
        if record.started:
            raise DockerError(409, f"exec {record.id} has already been started")
        record.started = True
        proc = await instances.exec_start(
            self.ctl, project=PROJECT, ref=record.container_id, spec=record.spec
        )
        record.proc, record.running = proc, True
        # Learnt beside the start, not before answering it: a 101 sent after a quick process already
        # finished goes out in the same segment as its output, which docker-py's reader then loses.
        record.pid_task = asyncio.ensure_future(proc.pid())
        return proc

    async def _finish(self, record: ExecRecord, proc: ExecProcess) -> None:
        try:
            record.exit_code = await proc.wait()
        finally:
            record.running = False

    async def start(self, req: Request) -> Hijack | Empty:
        record = self._record(req.params["id"])
        body = req.json_object()
        if body.get("Detach"):
            proc = await self._begin(record)
            task = asyncio.ensure_future(self._detached(record, proc))
            record.tasks.add(task)
            task.add_done_callback(record.tasks.discard)
            return Empty(200)
        proc = await self._begin(record)
        # As dockerd: the start request's Tty decides the framing (raw or multiplexed), whatever the
        # exec was created with; without it, the exec's own.
        raw_output = bool(body["Tty"]) if "Tty" in body else record.spec.tty

        async def run(raw: RawStream) -> None:
            await self._attached(record, proc, raw, raw_output)

        return Hijack(
            run,
            content_type="application/vnd.docker.raw-stream"
            if raw_output
            else "application/vnd.docker.multiplexed-stream",
        )

    async def _detached(self, record: ExecRecord, proc: ExecProcess) -> None:
        with contextlib.suppress(Exception):
            await proc.close_stdin()
        async for _ in proc.output():
            pass
        await self._finish(record, proc)

    async def _attached(
        self, record: ExecRecord, proc: ExecProcess, raw: RawStream, raw_output: bool
    ) -> None:
        spec = record.spec
        # The detach keys end the client's session and leave the process running (TTY with stdin, as
        # in dockerd); piped stdin is never scanned, so binary input cannot detach by accident.
        scanner = DetachScanner(record.detach_keys) if spec.tty and spec.stdin else None

        async def inbound() -> bool:
            while data := await raw.read():
                detached = False
                if scanner is not None:
                    data, detached = scanner.feed(data)
                if spec.stdin and data:
                    await proc.write(data)
                if detached:
                    return True
            if spec.stdin:
                await proc.close_stdin()
            return False

        async def outbound() -> None:
            async for stream, chunk in proc.output():
                wanted = record.attach_stderr if stream == "stderr" else record.attach_stdout
                if chunk and wanted:
                    await (raw.write(chunk) if raw_output else raw.write_frame(stream_id(stream), chunk))

        inp = asyncio.ensure_future(inbound())
        out = asyncio.ensure_future(outbound())
        try:
            await asyncio.wait({inp, out}, return_when=asyncio.FIRST_COMPLETED)
            if inp.done() and not inp.cancelled() and inp.exception() is None and inp.result():
                out.cancel()
                with contextlib.suppress(BaseException):
                    await out
                task = asyncio.ensure_future(self._drain(record, proc))
                record.tasks.add(task)
                task.add_done_callback(record.tasks.discard)
                return
            await out
            await self._finish(record, proc)
        except BaseException:
            with contextlib.suppress(Exception):
                await proc.kill()
            await self._finish(record, proc)
            raise
        finally:
            for pending in (inp, out):
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

    async def _drain(self, record: ExecRecord, proc: ExecProcess) -> None:
        """A detached session's process: its output goes nowhere until it ends, then its exit code is
        recorded."""
        async for _ in proc.output():
            pass
        await self._finish(record, proc)

    async def inspect(self, req: Request) -> Json:
        r = self._record(req.params["id"])
        pid = 0
        if r.pid_task is not None:
            with contextlib.suppress(Exception):
                pid = await asyncio.shield(r.pid_task)
        return Json(
            {
                "ID": r.id,
                "Running": r.running,
                "ExitCode": r.exit_code,
                "ProcessConfig": {
                    "tty": r.spec.tty,
                    "entrypoint": r.spec.args[0],
                    "arguments": r.spec.args[1:],
                    "privileged": False,
                    "user": r.spec.user,
                },
                "OpenStdin": r.spec.stdin,
                "OpenStderr": r.attach_stderr,
                "OpenStdout": r.attach_stdout,
                "CanRemove": not r.running and r.started,
                "ContainerID": r.container_id,
                "DetachKeys": "",
                "Pid": pid,
            }
        )

    async def resize(self, req: Request) -> Empty:
        r = self._record(req.params["id"])
        rows, cols = req.int_arg("h", 0) or 0, req.int_arg("w", 0) or 0
        if rows <= 0 or cols <= 0:
            raise bad_request("h and w: must be positive integers")
        if r.proc is not None and r.running:
            await r.proc.resize(rows, cols)
        return Empty(200)

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/containers/{id}/exec", self.create),
            Route("POST", "/exec/{id}/start", self.start),
            Route("GET", "/exec/{id}/json", self.inspect),
            Route("POST", "/exec/{id}/resize", self.resize),
        ]
