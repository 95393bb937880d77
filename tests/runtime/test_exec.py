"""Processes exec'd into running containers, with and without a TTY."""

from __future__ import annotations

import asyncio
import json

import pytest

from atoll.agent.runtime.exec import RuntimeExec
from atoll.agent.runtime.oci import build_exec_process
from atoll.agent.runtime.users import resolve_user
from atoll.model.errors import RuntimeFailure
from atoll.model.ports import ExecProcess, ExecSpec
from tests.runtime.conftest import Container, Harness


def as_port(proc: RuntimeExec) -> ExecProcess:
    """RuntimeExec is what the agent hands out as an ExecProcess (checked by mypy)."""
    return proc


async def start_exec(harness: Harness, c: Container, spec: ExecSpec) -> RuntimeExec:
    config = json.loads((c.bundle / "config.json").read_text())
    process = build_exec_process(
        spec,
        base_env=config["process"]["env"],
        user=resolve_user(harness.rootfs, spec.user),
        default_cwd=config["process"]["cwd"],
    )
    proc = await harness.runtime.exec(c.id, process, stdin=spec.stdin)
    assert as_port(proc) is proc
    return proc


async def collect(proc: RuntimeExec) -> tuple[bytes, bytes, int]:
    out: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    async for stream, chunk in proc.output():
        out[stream] += chunk
    return out["stdout"], out["stderr"], await proc.wait()


async def sleeper(harness: Harness) -> Container:
    return await harness.start(["sleep", "60"], env=["FOO=base", "KEEP=1"])


async def stop(harness: Harness, c: Container) -> None:
    await harness.runtime.kill(c.id, "KILL")
    await c.wait()


def test_exec_streams_env_and_exit_code(harness: Harness) -> None:
    async def body() -> None:
        c = await sleeper(harness)
        proc = await start_exec(
            harness,
            c,
            ExecSpec(
                args=["sh", "-c", 'echo "$FOO $KEEP"; echo err >&2; pwd; exit 5'],
                env=["FOO=exec"],
                cwd="/tmp",
            ),
        )
        assert await collect(proc) == (b"exec 1\n/tmp\n", b"err\n", 5)
        await stop(harness, c)

    asyncio.run(body())


def test_exec_with_a_bare_base_env_still_finds_programs(harness: Harness) -> None:
    async def body() -> None:
        c = await sleeper(harness)
        process = build_exec_process(
            ExecSpec(args=["sh", "-c", "echo $PATH"]),
            base_env=[],
            user=resolve_user(harness.rootfs, ""),
            default_cwd="/",
        )
        proc = await harness.runtime.exec(c.id, process)
        assert await collect(proc) == (
            b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
            b"",
            0,
        )
        await stop(harness, c)

    asyncio.run(body())


def test_exec_stdin(harness: Harness) -> None:
    async def body() -> None:
        c = await sleeper(harness)
        proc = await start_exec(harness, c, ExecSpec(args=["cat"], stdin=True))
        await proc.write(b"hello\n")
        await proc.close_stdin()
        assert await collect(proc) == (b"hello\n", b"", 0)
        # Without stdin the process reads /dev/null rather than waiting on us.
        proc = await start_exec(harness, c, ExecSpec(args=["cat"]))
        assert await collect(proc) == (b"", b"", 0)
        await stop(harness, c)

    asyncio.run(body())


def test_exec_user(harness: Harness) -> None:
    async def body() -> None:
        c = await sleeper(harness)
        proc = await start_exec(harness, c, ExecSpec(args=["id"], user="app"))
        assert await collect(proc) == (b"uid=1000(app) gid=1000(app) groups=2000(extra)\n", b"", 0)
        await stop(harness, c)

    asyncio.run(body())


def test_exec_tty(harness: Harness) -> None:
    async def body() -> None:
        c = await sleeper(harness)
        proc = await start_exec(
            harness, c, ExecSpec(args=["sh", "-c", 'tty; echo "$TERM" >&2; exit 3'], tty=True)
        )
        out, err, code = await collect(proc)
        assert (err, code) == (b"", 3)
        # runc clears ONLCR on the container's pty only after the process may have written (a runc
        # race), so the very first lines can carry an extra "\r"; terminals show them the same.
        out = out.replace(b"\r\r\n", b"\r\n")
        assert out.startswith(b"/dev/pts/") and out.endswith(b"\r\nxterm\r\n")
        await stop(harness, c)

    asyncio.run(body())


def test_exec_tty_input_and_resize(harness: Harness) -> None:
    async def body() -> None:
        c = await sleeper(harness)
        script = "stty size; echo ready; read line; echo got=$line; stty size"
        proc = await start_exec(harness, c, ExecSpec(args=["sh", "-c", script], tty=True, stdin=True))
        out = b""
        chunks = proc.output()
        async for _, chunk in chunks:
            out += chunk
            if b"ready" in out:
                break
        # The size the terminal starts with, before any resize.
        assert out.replace(b"\r\r\n", b"\r\n").startswith(b"24 80\r\nready\r\n")
        await proc.resize(40, 100)
        await asyncio.sleep(0.1)  # the runtime applies it when it gets our SIGWINCH
        await proc.write(b"abc\n")
        rest = b"".join([chunk async for _, chunk in chunks])
        assert await proc.wait() == 0
        # The terminal echoes the input, then the answers come.
        assert rest.endswith(b"abc\r\ngot=abc\r\n40 100\r\n")
        await stop(harness, c)

    asyncio.run(body())


def test_exec_missing_binary(harness: Harness) -> None:
    async def body() -> None:
        c = await sleeper(harness)
        for tty in (False, True):
            proc = await start_exec(harness, c, ExecSpec(args=["no-such-tool"], tty=tty))
            _, err, code = await collect(proc)
            assert code == 127
            assert b'"no-such-tool": executable file not found' in err
        proc = await start_exec(harness, c, ExecSpec(args=["/etc/passwd"]))
        _, err, code = await collect(proc)
        assert (err, code) == (b'exec: "/etc/passwd": permission denied\n', 126)
        await stop(harness, c)

    asyncio.run(body())


def test_exec_kill(harness: Harness) -> None:
    async def body() -> None:
        c = await sleeper(harness)
        proc = await start_exec(harness, c, ExecSpec(args=["sleep", "60"]))
        for _ in range(200):
            if proc._pid() is not None:
                break
            await asyncio.sleep(0.01)
        await proc.kill()
        assert await asyncio.wait_for(proc.wait(), 10) == 137
        await stop(harness, c)

    asyncio.run(body())


def test_exec_in_stopped_container(harness: Harness) -> None:
    async def body() -> None:
        c = await harness.run(["true"])
        with pytest.raises(RuntimeFailure, match="not running"):
            await start_exec(harness, c, ExecSpec(args=["true"]))

    asyncio.run(body())
