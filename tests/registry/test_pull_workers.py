"""Layers pulled in worker processes (``layerproc.py``, ``layerpool.py``): what the processes add.

The pull tests in test_pull.py, test_auth.py and test_bad_registries.py run through the workers too
(they are the default); these check the processes themselves: they start only when wanted and are
reused, a cancelled pull stops its worker before its scratch is removed, a worker that dies is a
clear error, hostile tars are refused inside the worker, and none outlives ``close()``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atoll.agent.images import ImageStore
from atoll.agent.registry.blobstream import Connections
from atoll.agent.registry.service import Registries
from atoll.model.errors import BadImage, RuntimeFailure
from atoll.model.registry import TransferEvent
from tests.images import factory
from tests.registry.helpers import image_of, insecure, pulled, random_layer, store_is_empty
from tests.registry.proxy import Proxy
from tests.registry.server import Registry, upload

pytestmark = pytest.mark.anyio


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_workers_start_on_demand_are_reused_and_end_with_close(
    registry: Registry, store: ImageStore
) -> None:
    first, second = image_of(random_layer("a"), random_layer("b")), image_of(random_layer("c"))
    upload(registry, "team/one", "1", first)
    upload(registry, "team/two", "1", second)
    regs = Registries(store, insecure(registry.host, parallel_downloads=2))
    try:
        assert regs.pull_worker_pids() == []  # an agent that never pulls starts none
        await regs.ready()
        started = regs.pull_worker_pids()
        assert len(started) == 2 and all(alive(p) for p in started)
        assert all(p != os.getpid() for p in started)
        await pulled(regs.pull(f"{registry.host}/team/one:1", {}))
        await pulled(regs.pull(f"{registry.host}/team/two:1", {}))
        assert sorted(regs.pull_worker_pids()) == sorted(started)  # the same processes did all three
    finally:
        await regs.close()
    assert not any(alive(p) for p in started)
    assert regs.pull_worker_pids() == []
    dirs = store.layer_dirs(second.diff_ids)
    assert (dirs[0] / "c").stat().st_size == 300_000


async def test_a_cancelled_pull_stops_its_worker_and_leaves_nothing(
    registry: Registry, store: ImageStore
) -> None:
    """A pull's job is cancelled (here by close(), as when the agent stops) while its worker is
    mid-layer: the worker is killed and reaped before the job's undo removes its scratch."""
    upload(registry, "team/slow", "1", image_of(random_layer("big", 3_000_000)))
    async with Proxy(registry.port, pace=0.05) as proxy:  # ~4 s for the layer: time to cancel it
        regs = Registries(store, insecure(proxy.host, parallel_downloads=1))
        try:
            await regs.ready()
            (worker,) = regs.pull_worker_pids()
            receiving = asyncio.Event()

            async def pull() -> None:
                async for event in regs.pull(f"{proxy.host}/team/slow:1", {}):
                    if isinstance(event, TransferEvent) and event.status == "Downloading" and event.current:
                        receiving.set()

            task = asyncio.ensure_future(pull())
            await asyncio.wait_for(receiving.wait(), 60)
        finally:
            await regs.close()  # cancels the job, which waits for its worker to be gone
        (outcome,) = await asyncio.gather(task, return_exceptions=True)
        assert isinstance(outcome, asyncio.CancelledError | RuntimeFailure), outcome
        assert not alive(worker)
        assert store_is_empty(store)


async def test_a_worker_that_dies_is_a_clear_error_and_the_next_pull_works(
    registry: Registry, store: ImageStore
) -> None:
    image = image_of(random_layer("big", 3_000_000))
    upload(registry, "team/dies", "1", image)
    async with Proxy(registry.port, pace=0.05) as proxy:
        regs = Registries(store, insecure(proxy.host, parallel_downloads=1))
        try:
            await regs.ready()
            (worker,) = regs.pull_worker_pids()
            events = regs.pull(f"{proxy.host}/team/dies:1", {})
            with pytest.raises(RuntimeFailure, match="layer worker process died"):
                async for event in events:
                    if isinstance(event, TransferEvent) and event.status == "Downloading" and event.current:
                        os.kill(worker, signal.SIGKILL)
            assert store_is_empty(store)
            proxy.pace = 0.0
            result, _ = await pulled(regs.pull(f"{proxy.host}/team/dies:1", {}))  # a new worker
            assert result.record.id == image.id
            assert worker not in regs.pull_worker_pids()
        finally:
            await regs.close()


async def test_a_hostile_layer_is_refused_inside_the_worker(registry: Registry, store: ImageStore) -> None:
    image = image_of(random_layer("fine"), factory.layer(factory.file("../../escape", b"pwned")))
    upload(registry, "team/hostile", "1", image)
    regs = Registries(store, insecure(registry.host))
    try:
        with pytest.raises(BadImage, match=r"'\.\.' in a path"):
            await pulled(regs.pull(f"{registry.host}/team/hostile:1", {}))
    finally:
        await regs.close()
    assert store_is_empty(store)
    assert not (store.root.parent / "escape").exists()
    assert not (store.root / "escape").exists()


async def test_threads_instead_of_processes_still_pull(registry: Registry, store: ImageStore) -> None:
    image = image_of(random_layer("a"), random_layer("b"))
    upload(registry, "team/threads", "1", image)
    regs = Registries(store, insecure(registry.host, worker_processes=False))
    try:
        assert regs.pull_worker_pids() == []
        result, events = await pulled(regs.pull(f"{registry.host}/team/threads:1", {}))
    finally:
        await regs.close()
    assert result.record.id == image.id
    assert {"Downloading", "Download complete", "Extracting", "Pull complete"} <= {e.status for e in events}


def test_layer_connections_get_the_large_receive_buffer(registry: Registry) -> None:
    """Set before the handshake, so the registry may send that far ahead of the unpacking."""
    for size, least in ((8 << 20, 8 << 20), (0, 1)):
        connections = Connections(lambda scheme, netloc: ssl.create_default_context(), 10.0, size)
        conn = connections.new(("http", registry.host))
        try:
            conn.connect()
            assert conn.sock is not None
            got = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            assert got >= least
            if not size:
                assert got < 8 << 20  # the kernel's own start
        finally:
            conn.close()


async def test_workers_keep_freed_memory(registry: Registry, store: ImageStore) -> None:
    regs = Registries(store, insecure(registry.host, parallel_downloads=1))
    try:
        await regs.ready()
        (worker,) = regs.pull_worker_pids()
        environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    finally:
        await regs.close()
    assert f"MALLOC_MMAP_THRESHOLD_={64 << 20}".encode() in environ


def test_idle_workers_exit_when_the_agent_is_killed() -> None:
    """SIGKILL gives the agent no chance to close(): the workers see their socket close and exit."""
    script = (
        "import sys\n"
        "from atoll.agent.registry.layerpool import LayerWorkers\n"
        "workers = LayerWorkers(2)\n"
        "workers.start()\n"
        "print(*workers.pids(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert agent.stdout is not None
        pids = [int(p) for p in agent.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
    finally:
        agent.kill()
        agent.wait()
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)
