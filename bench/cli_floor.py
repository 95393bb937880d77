"""The floor under any Docker daemon's `docker run` time: the CLI against a server that answers at once.

A minimal HTTP/1.1 responder on a unix socket replays canned answers to the requests `docker run`
makes (ping, create, attach, wait, start), with no work behind them: the time the `docker` CLI takes
against it is what the client alone costs (its start-up, its request round trips), so neither dockerd
nor Atoll can go below it. For the measurement only: it is part of the benchmark, never of Atoll.

`.venv/bin/python -m bench.cli_floor [--runs 20]` prints the medians; bench/docker_compare.py reports
them as ``cli_floor_ms`` and ``cli_floor_detached_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tests.docker.stock import DOCKER_CLI

API_VERSION = "1.47"
CONTAINER_ID = "f" * 64
_PATH = re.compile(r"^(?:/v[0-9.]+)?(/[^?]*)")


def _response(status: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    lines = [
        f"HTTP/1.1 {status}",
        f"Api-Version: {API_VERSION}",
        "Ostype: linux",
        "Docker-Experimental: false",
        "Server: cli-floor",
        *(f"{k}: {v}" for k, v in headers),
    ]
    if not status.startswith("101"):
        lines += [f"Content-Length: {len(body)}"]
        if body:
            lines.append("Content-Type: application/json")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def answer(method: str, target: str) -> tuple[bytes, bool]:
    """The canned reply to one request, and whether the connection is handed over (hijacked) and ends."""
    match = _PATH.match(target)
    path = match.group(1) if match else target
    if path == "/_ping":
        return _response("200 OK", b"" if method == "HEAD" else b"OK"), False
    if path == "/containers/create":
        return _response("201 Created", json.dumps({"Id": CONTAINER_ID, "Warnings": []}).encode()), False
    if path.endswith("/attach"):
        headers = (
            ("Content-Type", "application/vnd.docker.multiplexed-stream"),
            ("Connection", "Upgrade"),
            ("Upgrade", "tcp"),
        )
        return _response("101 UPGRADED", headers=headers), True
    if path.endswith("/wait"):
        return _response("200 OK", b'{"Error":null,"StatusCode":0}'), False
    if path.endswith("/start"):
        return _response("204 No Content"), False
    return _response("404 Not Found", b'{"message":"not canned"}'), False


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            fields = (h.partition(":") for h in header_lines if h)
            headers = {k.strip().lower(): v.strip() for k, _, v in fields}
            if "content-length" in headers:
                await reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            reply, hijacked = answer(method, target)
            writer.write(reply)
            await writer.drain()
            if hijacked:  # the attached stream: nothing to say, the container's output is empty
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


class FloorServer:
    """The responder, on its own event loop in a thread, listening on ``socket``."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_unix_server(_serve, path=str(self.socket)))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.run_until_complete(server.wait_closed())
            self._loop.close()

    def __enter__(self) -> FloorServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self.socket.unlink(missing_ok=True)


def measure_floor(runs: int) -> dict[str, float]:
    """Median wall time of `docker run --rm busybox true` and `docker run -d busybox sleep 1d` against
    the instant responder (after a warm-up of the CLI binary)."""
    with tempfile.TemporaryDirectory(prefix="atoll-cli-floor-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(DOCKER_HOST=f"unix://{tmp}/docker.sock", DOCKER_CONFIG="/nonexistent-atoll-docker-config")
        figures = {}
        with FloorServer(Path(tmp) / "docker.sock"):
            for key, args in (
                ("cli_floor_ms", ["run", "--rm", "busybox", "true"]),
                ("cli_floor_detached_ms", ["run", "-d", "busybox", "sleep", "1d"]),
            ):
                times = []
                for i in range(runs + 2):
                    t0 = time.perf_counter()
                    command = [DOCKER_CLI, *args]
                    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
                    if done.returncode != 0:
                        raise RuntimeError(f"docker {' '.join(args)} against the responder: {done.stderr}")
                    if i >= 2:  # the first two warm the page cache
                        times.append(time.perf_counter() - t0)
                figures[key] = round(statistics.median(times) * 1000, 1)
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    print(json.dumps(measure_floor(parser.parse_args().runs)))


if __name__ == "__main__":
    main()
