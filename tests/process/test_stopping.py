"""Stopping a server process on a signal (atoll/stopping.py): the first SIGTERM or SIGINT lets the
request under way finish and the code after ``serve()`` run; a second exits at once.

The signals are sent to a child Python process running ``scenario``: with the bug (uvicorn raising the
signal again) it is the child that dies, not the test run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from atoll.stopping import QuietServer, StopSignals
from tests.e2e.cloud import free_port

ROOT = Path(__file__).resolve().parents[2]


async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers after 0.5 s: long enough to be under way when the signal comes."""
    assert scope["type"] == "http"
    await asyncio.sleep(0.5)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


async def _scenario(sig: int, port: int) -> None:
    with StopSignals() as stop:
        server = QuietServer(
            uvicorn.Config(
                slow_app, port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=5
            )
        )
        stop.on_stop(lambda: setattr(server, "should_exit", True))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient() as client:
            request = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/"))
            await asyncio.sleep(0.2)  # under way
            os.kill(os.getpid(), sig)
            await stop.wait()
            answer = await request
        await serving
        print(f"answered {answer.status_code} {answer.text}", flush=True)
    print("after serve", flush=True)


def scenario(sig: int, port: int) -> None:
    asyncio.run(_scenario(sig, port))


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lets_the_request_finish_and_the_process_go_on(sig: signal.Signals) -> None:
    child = run_child(
        f"from tests.process.test_stopping import scenario; scenario({int(sig)}, {free_port()})"
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.splitlines() == ["answered 200 done", "after serve"]


def test_a_second_signal_exits_at_once() -> None:
    exits: list[int] = []

    async def main() -> None:
        with StopSignals(exit_now=exits.append) as stop:
            called: list[bool] = []
            stop.on_stop(lambda: called.append(True))
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stop.wait(), 5)
            assert called == [True] and stop.requested and not exits
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):
                if exits:
                    break
                await asyncio.sleep(0.01)
            late: list[bool] = []
            stop.on_stop(lambda: late.append(True))  # asked after the stop: runs at once
            assert late == [True]

    asyncio.run(main())
    assert exits == [128 + signal.SIGINT]
    # The process's own handlers are back once it is done.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
