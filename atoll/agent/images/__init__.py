"""The per-host image layer store: verified blobs, unpacked layers, overlayfs mounts. See docs/images.md.

The names below are imported on first use, so that a module of this package (the layer worker
processes import ``layers`` and ``extract``) can be imported without the whole store (asyncio, httpx).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atoll.agent.images.overlay import is_mounted, mount_overlay, unmount
    from atoll.agent.images.starter import busybox_rootfs_tar
    from atoll.agent.images.store import ImageStore

__all__ = ["ImageStore", "busybox_rootfs_tar", "is_mounted", "mount_overlay", "unmount"]
_HOME = {
    "ImageStore": "atoll.agent.images.store",
    "busybox_rootfs_tar": "atoll.agent.images.starter",
    "is_mounted": "atoll.agent.images.overlay",
    "mount_overlay": "atoll.agent.images.overlay",
    "unmount": "atoll.agent.images.overlay",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
