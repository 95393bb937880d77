"""The agent's side of ``docker cp``, ``docker export``, ``docker diff`` and ``SizeRw``: the operations
of ``rootfiles.py`` on an instance's merged root filesystem, mounted for the purpose if the instance is
stopped (see ``rootfiles.py`` for which tree, and why it is safe)."""

from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from atoll.agent.images.layout import remove_tree
from atoll.agent.images.overlay import is_mounted, mount_overlay, unmount
from atoll.agent.images.store import ImageStore
from atoll.agent.layout import InstanceLayout
from atoll.agent.mountview import ViewMount, mount_view
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


MountsOf = Callable[[str, Path], Awaitable[list[ViewMount]]]
"""An instance's volume and bind mounts, given its mounted root (volumes are populated first)."""


async def _no_mounts(instance_id: str, rootfs: Path) -> list[ViewMount]:
    return []


def _not_running(instance_id: str) -> int | None:
    return None


class RootView:
    def __init__(
        self,
        store: ImageStore,
        layout_of: Callable[[str], InstanceLayout],
        lock_of: Callable[[str], asyncio.Lock],
        mounts_of: MountsOf = _no_mounts,
        pid_of: Callable[[str], int | None] = _not_running,
    ) -> None:
        self._store = store
        self._layout_of = layout_of
        self._lock_of = lock_of
        self._mounts_of = mounts_of
        self._pid_of = pid_of

    def _layout(self, instance_id: str) -> InstanceLayout:
        layout = self._layout_of(instance_id)
        if not layout.upper.is_dir():
            raise NotFound(f"instance {instance_id} has no root filesystem on this host")
        return layout

    @asynccontextmanager
    async def _merged(
        self, instance_id: str, layers: list[str], *, with_mounts: bool = False
    ) -> AsyncIterator[Path]:
        """The merged tree: the running instance's mount, or one made (under the lock) for a stopped one.
        ``with_mounts`` (``docker cp``): as the instance sees it, volumes and bind mounts included: a
        running one's ``/proc/<pid>/root``, a stopped one's ``mountview``."""
        layout = self._layout(instance_id)
        lock = self._lock_of(instance_id)
        await lock.acquire()
        held = True
        try:
            pid = self._pid_of(instance_id) if with_mounts else None
            if pid is not None:
                lock.release()
                held = False
                yield Path(f"/proc/{pid}/root")
                return
            if is_mounted(layout.rootfs) and not with_mounts:
                lock.release()  # running: its mount stays while it runs, and a start waits for nothing
                held = False
                yield layout.rootfs
                return
            mounted_here = not is_mounted(layout.rootfs)
            if mounted_here:
                lowers = self._store.layer_dirs(layers)
                await asyncio.to_thread(mount_overlay, lowers, layout.upper, layout.work, layout.rootfs)
            try:
                mounts = await self._mounts_of(instance_id, layout.rootfs) if with_mounts else []
                if not mounts:
                    yield layout.rootfs
                    return
                view = layout.root / f"cp-view-{secrets.token_hex(4)}"
                with mount_view(layout.rootfs, view, mounts) as root:
                    yield root
            finally:
                if mounted_here:
                    await asyncio.to_thread(unmount, layout.rootfs)
        finally:
            if held:
                lock.release()

    async def stat(self, instance_id: str, layers: list[str], path: str) -> PathStat:
        async with self._merged(instance_id, layers, with_mounts=True) as root:
            return await asyncio.to_thread(path_stat, root, path)

    async def archive(
        self, instance_id: str, layers: list[str], path: str, *, contents: bool = False
    ) -> AsyncIterator[bytes]:
        async with self._merged(instance_id, layers, with_mounts=not contents) as root:
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
            async with self._merged(instance_id, layers, with_mounts=True) as root:

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
