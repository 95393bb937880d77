"""Exit notification without being the parent.

Container inits are not our children (the runtime exits right after starting them, and we must not
be their reaper, or they would die with us). A pidfd becomes readable when its process exits, for any
process, so the event loop learns of exits at once without polling and without a helper per container.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


class ExitWatcher:
    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def watch(self, key: str, pid: int, on_exit: Callable[[], object]) -> None:
        """Call ``on_exit`` once, soon after ``pid`` exits (immediately if it is already gone)."""
        loop = asyncio.get_running_loop()
        self.unwatch(key)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            loop.call_soon(on_exit)
            return
        self._fds[key] = fd

        def fire() -> None:
            self.unwatch(key)
            on_exit()

        loop.add_reader(fd, fire)

    def unwatch(self, key: str) -> None:
        fd = self._fds.pop(key, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    def watching(self, key: str) -> bool:
        return key in self._fds

    def close(self) -> None:
        for key in list(self._fds):
            self.unwatch(key)


async def exited(pid: int) -> None:
    """Wait for ``pid`` to end (at once if it is already gone), child or not."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    done: asyncio.Future[None] = loop.create_future()

    def fire() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, fire)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)
