"""Cluster channel benchmark: the generic RPC over mutual TLS, on loopback, in one process.

Measures what every cluster operation pays on top of the work itself:
- join: token check, CSR, certificate issue and the two TLS round trips of ``atoll join``;
- unary calls controller -> agent (``image_present``) and agent -> controller (``heartbeat``, which
  writes a row): latency percentiles over keep-alive connections;
- a byte stream (``export_image``, as an image copy uses it): MB/s through NDJSON + base64.
Baseline: the same unary call made in-process on the same object, so the ratio is the wire's cost.

Run: `.venv/bin/python bench/cluster_rpc.py [--calls N] [--mb M]`. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import uvicorn

from atoll.agent.cluster import membership as agent_membership
from atoll.agent.cluster.daemon import agent_app, control_plane
from atoll.agent.cluster.join import join
from atoll.api.cluster_listener import cluster_app
from atoll.controller import host_connector, load_or_make_ca
from atoll.model.cluster import HostReport, HostResources
from atoll.services import membership
from atoll.services.clusterconf import ClusterConfig
from atoll.services.context import AgentRegistry, Controller
from atoll.store.db import open_database
from atoll.wire import pki
from atoll.wire.listener import https_server


class Host:
    """Just enough of a host for the calls measured here."""

    def __init__(self, host_id: str, mb: int) -> None:
        self.host_id = host_id
        self._chunk = b"\xab" * (1 << 20)
        self._mb = mb

    async def image_present(self, image_id: str) -> bool:
        return image_id == "x"

    async def export_image(self, image_id: str) -> AsyncIterator[bytes]:
        for _ in range(self._mb):
            yield self._chunk


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(server: uvicorn.Server) -> asyncio.Task[None]:
    task = asyncio.create_task(server._serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return task


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
    }


async def timed(calls: int, fn: Any) -> list[float]:
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - start)
    return out


async def main(calls: int, mb: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ca_key, ca_cert, ident = load_or_make_ca(tmp / "controller")
        port = free_port()
        ctl = Controller(
            sessions=open_database(f"sqlite:///{tmp / 'atoll.db'}"),
            agents=AgentRegistry(),
            cluster=ClusterConfig(ca_key, ca_cert, f"127.0.0.1:{port}", host_connector(ident)),
        )
        listener = https_server(
            cluster_app(ctl), ident, "127.0.0.1", port, accept=lambda _: True, require_client_cert=False
        )
        tasks = [await serve(listener)]
        token = membership.create_token(ctl, ttl=60).token
        agent_port = free_port()
        start = time.perf_counter()
        joined = await asyncio.to_thread(
            join, token, tmp / "host", listen=f"127.0.0.1:{agent_port}", name="bench"
        )
        join_s = time.perf_counter() - start
        host = Host(joined.host_id, mb)
        agent_server = https_server(
            agent_app(cast(Any, host)),
            agent_membership.identity(tmp / "host"),
            "127.0.0.1",
            agent_port,
            accept=lambda peer: peer == pki.CONTROLLER_CN,
        )
        tasks.append(await serve(agent_server))
        control = control_plane(tmp / "host", joined)
        report = HostReport(
            f"127.0.0.1:{agent_port}", "bench", "runc", 2, HostResources(4000, 1 << 33), HostResources()
        )
        await control.heartbeat(joined.host_id, report)
        remote = ctl.agents.get(joined.host_id)

        async def remote_present() -> None:
            await remote.image_present("x")

        async def local_present() -> None:
            await host.image_present("x")

        async def beat() -> None:
            await control.heartbeat(joined.host_id, report)

        await timed(20, remote_present)  # warm the connection pools
        unary = await timed(calls, remote_present)
        local = await timed(calls, local_present)
        heartbeat = await timed(calls, beat)
        start = time.perf_counter()
        received = 0
        async for chunk in remote.export_image("x"):
            received += len(chunk)
        stream_s = time.perf_counter() - start
        for server in (listener, agent_server):
            server.should_exit = True
        await asyncio.gather(*tasks)
    return {
        "join_ms": round(join_s * 1000, 1),
        "controller_to_agent_unary": percentiles(unary),
        "in_process_unary": percentiles(local),
        "agent_to_controller_heartbeat": percentiles(heartbeat),
        "stream_mb_per_s": round(received / (1 << 20) / stream_s, 1),
        "calls": calls,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--mb", type=int, default=64)
    args = parser.parse_args()
    result = asyncio.run(main(args.calls, args.mb))
    print(json.dumps(result))
