"""The worker processes that pull layers (``layerproc.py``), and how a pull thread drives one.

Each worker is a fresh interpreter (``python -c`` running ``layerproc.main``) talking over a socket
pair with multiprocessing's ``Connection`` framing. Not multiprocessing's own start methods: a fork of
the agent would copy its event loop, threads and locks, and *spawn* and *forkserver* both import the
parent's ``__main__`` again in every child (measured: seconds per worker under load, and arbitrary
code for an agent started from a script). A worker costs an interpreter start (~0.3 s of CPU), once:
workers are kept and reused, a pool of idle ones grown as needed and started ahead of the first pull
by :meth:`LayerWorkers.start`, which waits until each says it is ready.

A pull's layer is driven from a thread of the agent (one per layer at a time, as before), which now
mostly sleeps in ``poll``: it sends the job, relays progress and 401 challenges (the event loop
answers those, as for every other registry call), and returns the size once the worker says the layer
is unpacked and verified. A cancelled pull kills its worker and waits for it to be gone, so nothing
writes into the pull's scratch directory afterwards; the pool starts a new one when it needs one.
:meth:`LayerWorkers.close` ends them all. A worker whose socket closes exits, so when the agent dies
its workers exit too (at once if idle, at their next progress message if busy).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection

from atoll.agent.registry.blobstream import Cancelled
from atoll.agent.registry.layerproc import LayerJob
from atoll.model.errors import AtollError, RuntimeFailure

POLL = 0.1
"""Seconds between checks, while waiting for a worker, whether the pull was cancelled."""
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}
"""glibc settings for the workers: keep freed memory for the next 4 MiB buffer. By default each such
buffer is mapped fresh and returned at once, so every byte of a layer costs page faults several
times over: measured 99,000 minor faults and 1.01 s of CPU for the benchmark pull, against 9,000 and
0.78 s with these (a worker then keeps its high-water mark, a few tens of MiB)."""
START_TIMEOUT = 120.0
"""Longest wait for a new worker to say it is ready (an interpreter start on a very busy host)."""

Authorize = Callable[[list[str]], dict[str, str]]
"""Answer a registry's 401 (its WWW-Authenticate values) and give the auth headers to send next."""
Answer = Callable[[int, bytes], Exception]
"""The domain error for a registry's final HTTP answer (status, start of its body)."""


class _Worker:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-c", "from atoll.agent.registry.layerproc import main; main()"],
                pass_fds=(theirs.fileno(),),
                env={**os.environ, **WORKER_MALLOC, "ATOLL_LAYER_FD": str(theirs.fileno())},
                stdin=subprocess.DEVNULL,
            )
            self.conn = Connection(ours.detach())
        self.ready = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self) -> None:
        """Block until the worker has started (its imports done); RuntimeFailure if it doesn't."""
        if self.ready:
            return
        try:
            if not self.conn.poll(START_TIMEOUT):
                raise RuntimeFailure(f"a layer worker process did not start in {START_TIMEOUT:.0f} s")
            message = self.conn.recv()
        except (EOFError, OSError):
            raise RuntimeFailure("a layer worker process died while starting") from None
        if message != ("ready",):
            raise RuntimeFailure(f"a layer worker process said {message!r} instead of ready")
        self.ready = True

    def stop(self, *, kill: bool) -> None:
        if kill:
            self.process.kill()
        self.conn.close()  # a waiting worker sees EOF and exits
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class LayerWorkers:
    """A pool of layer worker processes, shared by the pulls of one agent."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Fork ``size`` idle workers now (blocking: call it off the event loop)."""
        with self._lock:
            missing = self.size - len(self._idle) - len(self._busy)
        started = [_Worker() for _ in range(max(missing, 0))]  # all start at once, then we wait
        try:
            for worker in started:
                worker.wait_ready()
        except BaseException:
            for worker in started:
                worker.stop(kill=True)
            raise
        with self._lock:
            if not self._closed:
                self._idle.extend(started)
                return
        for worker in started:
            worker.stop(kill=False)

    def pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in (*self._idle, *self._busy)]

    def close(self) -> None:
        """End every worker; busy ones are killed (their pulls fail with ``Cancelled``)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
        for worker in idle:
            worker.stop(kill=False)
        for worker in busy:
            worker.process.kill()

    def run(
        self,
        job: LayerJob,
        *,
        progress: Callable[[int], None],
        authorize: Authorize,
        answer: Answer,
        stop: threading.Event,
    ) -> int:
        """Have a worker pull ``job``'s layer; its unpacked size. On the calling (pull) thread."""
        worker = self._take()
        healthy = False
        try:
            worker.conn.send(job)
            while True:
                if stop.is_set():
                    raise Cancelled(f"{job.what}: the pull was cancelled")
                if not worker.conn.poll(POLL):
                    continue
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    raise RuntimeFailure(f"{job.what}: the layer worker process died") from None
                kind = message[0]
                if kind == "progress":
                    progress(message[1])
                elif kind == "auth":
                    try:
                        headers = authorize(message[1])
                    except AtollError as exc:
                        worker.conn.send(("failed", exc))
                        continue  # the worker raises it and reports back
                    worker.conn.send(("headers", headers))
                else:
                    healthy = True
                    if kind == "done":
                        return int(message[1])
                    if kind == "answer":
                        raise answer(message[1], message[2])
                    raise message[1]
        finally:
            self._give(worker, healthy)

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise Cancelled("the layer workers are shut down")
            worker = self._idle.pop() if self._idle else None
        if worker is None:
            worker = _Worker()
        with self._lock:
            self._busy.add(worker)
        try:
            worker.wait_ready()
        except BaseException:
            with self._lock:
                self._busy.discard(worker)
            worker.stop(kill=True)
            raise
        return worker

    def _give(self, worker: _Worker, healthy: bool) -> None:
        """Back to the pool if it finished its job; else (cancelled, died) it is stopped for good."""
        with self._lock:
            self._busy.discard(worker)
            keep = healthy and not self._closed and len(self._idle) < self.size
            if keep:
                self._idle.append(worker)
        if not keep:
            worker.stop(kill=not healthy)
