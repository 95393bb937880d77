"""The agent's side of ``docker cp``, ``docker export``, ``docker diff`` and ``SizeRw``: the operations
of ``rootfiles.py`` on an instance's merged root filesystem, mounted for the purpose if the instance is
stopped (see ``rootfiles.py`` for which tree, and why it is safe)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from atoll.agent.images.layout import remove_tree
from atoll.agent.images.overlay import is_mounted, mount_overlay, unmount
from atoll.agent.images.store import ImageStore
from atoll.agent.layout import InstanceLayout
from atoll.agent.rootfiles import (
    extract_archive,
    in_layers,
    path_stat,
    tree_size,
    upper_changes,
    without_mountpoints,
    write_archive,
)
from atoll.agent.threadstream import stream_writes
from atoll.model.errors import NotFound
from atoll.model.rootfiles import FileChange, PathStat

SPOOL_CHUNK = 1 << 20


class RootView:
    def __init__(
        self,
        store: ImageStore,
        layout_of: Callable[[str], InstanceLayout],
        lock_of: Callable[[str], asyncio.Lock],
    ) -> None:
        self._store = store
        self._layout_of = layout_of
        self._lock_of = lock_of

    def _layout(self, instance_id: str) -> InstanceLayout:
        layout = self._layout_of(instance_id)
        if not layout.upper.is_dir():
            raise NotFound(f"instance {instance_id} has no root filesystem on this host")
        return layout

    @asynccontextmanager
    async def _merged(self, instance_id: str, layers: list[str]) -> AsyncIterator[Path]:
        """The merged tree: the running instance's mount, or one made (under the lock) for a stopped one."""
        layout = self._layout(instance_id)
        lock = self._lock_of(instance_id)
        await lock.acquire()
        held = True
        try:
            if is_mounted(layout.rootfs):
                lock.release()  # running: its mount stays while it runs, and a start waits for nothing
                held = False
                yield layout.rootfs
                return
            lowers = self._store.layer_dirs(layers)
            await asyncio.to_thread(mount_overlay, lowers, layout.upper, layout.work, layout.rootfs)
            try:
                yield layout.rootfs
            finally:
                await asyncio.to_thread(unmount, layout.rootfs)
        finally:
            if held:
                lock.release()

    async def stat(self, instance_id: str, layers: list[str], path: str) -> PathStat:
        async with self._merged(instance_id, layers) as root:
            return await asyncio.to_thread(path_stat, root, path)

    async def archive(
        self, instance_id: str, layers: list[str], path: str, *, contents: bool = False
    ) -> AsyncIterator[bytes]:
        async with self._merged(instance_id, layers) as root:
            async for chunk in stream_writes(
                lambda out: write_archive(root, path, out, contents=contents), lambda: None
            ):
                yield chunk

    async def extract(
        self, instance_id: str, layers: list[str], path: str, archive: AsyncIterator[bytes]
    ) -> None:
        layout = self._layout(instance_id)
        # Spooled beside the instance (root-only, on local disk) so the tar is whole before the tree
        # is touched: a client that hangs up half-way changes nothing.
        fd, spool_name = tempfile.mkstemp(prefix="cp-in-", dir=layout.root)
        spool = Path(spool_name)
        try:
            with open(fd, "wb") as f:
                async for chunk in archive:
                    await asyncio.to_thread(f.write, chunk)
            async with self._merged(instance_id, layers) as root:

                def run() -> None:
                    with open(spool, "rb") as tar:
                        extract_archive(root, path, tar)

                await asyncio.to_thread(run)
        finally:
            remove_tree(spool)

    async def changes(self, instance_id: str, layers: list[str]) -> list[FileChange]:
        layout = self._layout(instance_id)
        lowers = list(reversed(self._store.layer_dirs(layers)))
        found = await asyncio.to_thread(upper_changes, layout.upper, lambda p: in_layers(lowers, p))
        return without_mountpoints(found, _mount_destinations(layout))

    async def size_rw(self, instance_id: str) -> int:
        return await asyncio.to_thread(tree_size, self._layout(instance_id).upper)


def _mount_destinations(layout: InstanceLayout) -> set[str]:
    """Where the instance's OCI config mounts things (none before its first start)."""
    try:
        config = json.loads(layout.config.read_bytes())
    except (OSError, ValueError):
        return set()
    mounts = config.get("mounts") if isinstance(config, dict) else None
    return {
        "/" + m["destination"].strip("/")
        for m in mounts or []
        if isinstance(m, dict) and isinstance(m.get("destination"), str)
    }
