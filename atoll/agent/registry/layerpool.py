"""The worker processes that pull layers (``layerproc.py``), and how a pull thread drives one.

Workers are forked by multiprocessing's *forkserver*: a fresh interpreter started once, with the
registry and unpacking modules imported in advance, forks each worker. So no worker is a fork of the
agent's own process (its event loop, threads and locks), and starting one costs a fork, not an
interpreter start. Workers are kept and reused: a pool of idle ones, grown as needed, started ahead
of the first pull by :meth:`LayerWorkers.start`.

A pull's layer is driven from a thread of the agent (one per layer at a time, as before), which now
mostly sleeps in ``poll``: it sends the job, relays progress and 401 challenges (the event loop
answers those, as for every other registry call), and returns the size once the worker says the layer
is unpacked and verified. A cancelled pull kills its worker and waits for it to be gone, so nothing
writes into the pull's scratch directory afterwards; the pool forks a new one when it needs one.
:meth:`LayerWorkers.close` ends them all (closing a worker's pipe ends it too: when the agent dies,
its workers see EOF and exit).
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess

from atoll.agent.registry.layerproc import LayerJob, serve
from atoll.model.errors import AtollError, RuntimeFailure

POLL = 0.1
"""Seconds between checks, while waiting for a worker, whether the pull was cancelled."""
PRELOAD = ["atoll.agent.registry.layerproc"]
"""Imported once by the forkserver, so a forked worker starts with it (isal, the tar reader...)."""

Authorize = Callable[[list[str]], dict[str, str]]
"""Answer a registry's 401 (its WWW-Authenticate values) and give the auth headers to send next."""
Answer = Callable[[int, bytes], Exception]
"""The domain error for a registry's final HTTP answer (status, start of its body)."""


class Cancelled(RuntimeFailure):
    """The pull was given up while a worker had its layer; the worker was stopped."""


class _Worker:
    def __init__(self, ctx: multiprocessing.context.ForkServerContext) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process: BaseProcess = ctx.Process(target=serve, args=(child,), name="atoll-layer", daemon=True)
        self.process.start()
        child.close()

    def stop(self, *, kill: bool) -> None:
        if kill:
            self.process.kill()
        self.conn.close()  # a waiting worker sees EOF and exits
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.process.close()


class LayerWorkers:
    """A pool of layer worker processes, shared by the pulls of one agent."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Fork ``size`` idle workers now (blocking: call it off the event loop)."""
        with self._lock:
            missing = self.size - len(self._idle) - len(self._busy)
        started = [_Worker(self._ctx) for _ in range(max(missing, 0))]
        with self._lock:
            if not self._closed:
                self._idle.extend(started)
                return
        for worker in started:
            worker.stop(kill=False)

    def pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in (*self._idle, *self._busy) if w.process.pid is not None]

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
            worker = _Worker(self._ctx)
        with self._lock:
            self._busy.add(worker)
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
