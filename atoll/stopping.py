"""Orderly stops of the long-running processes (``atoll up``, ``atoll serve``).

uvicorn, left to itself, catches SIGINT and SIGTERM, shuts its server down, then puts the previous
handlers back and raises the signal again. For SIGTERM that is the default action: the process dies
inside ``server.serve()``, and nothing after it runs: the agent is never closed (links still being
removed in the background are left to the next start-up's sync), the host is never marked offline.

So the process owns the two signals instead (``StopSignals``), and its uvicorn servers leave them
alone (``QuietServer``):

- the first SIGINT or SIGTERM asks for a stop: the callbacks registered with ``on_stop`` run (the
  listeners stop accepting), ``wait()`` returns, and the process winds down in order and exits 0;
- a second one, while that is under way, exits at once: the way out of a stop that hangs.

Either way containers keep running: they are not the process's children (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Generator
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """SIGINT and SIGTERM on the running loop: the first asks for a stop, a second forces an exit."""

    def __init__(self, exit_now: Callable[[int], object] = os._exit) -> None:
        self._exit_now = exit_now
        self._requested = asyncio.Event()
        self._callbacks: list[Callable[[], object]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> StopSignals:
        self._loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            self._loop.add_signal_handler(sig, self._received, sig)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._loop is not None
        for sig in STOP_SIGNALS:
            self._loop.remove_signal_handler(sig)  # back to Python's defaults (KeyboardInterrupt, terminate)

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def on_stop(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` when a stop is asked for (at once, if it already was)."""
        self._callbacks.append(callback)
        if self.requested:
            callback()

    def request(self) -> None:
        """Ask for a stop, as the first signal does."""
        if self.requested:
            return
        self._requested.set()
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                log.exception("a stop callback failed")

    async def wait(self) -> None:
        await self._requested.wait()

    def _received(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self.requested:
            log.warning("%s again: exiting now, without finishing the stop (containers keep running)", name)
            self._exit_now(128 + sig)
            return
        log.info("%s: stopping (send it again to exit at once; containers keep running)", name)
        self.request()


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT and SIGTERM to its process (see ``StopSignals``): set
    ``should_exit`` to stop it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    @classmethod
    def serving(cls, app: ASGIApp, host: str, port: int, grace: int) -> QuietServer:
        """The native API's server: no access log, no lifespan events (the process starts and stops
        what the app needs), no websocket pings, and ``grace`` seconds for requests in flight."""
        return cls(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
                ws_ping_interval=None,
                timeout_graceful_shutdown=grace,
            )
        )
