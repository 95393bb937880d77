"""The per-host image layer store: verified blobs, unpacked layers, overlayfs mounts. See docs/images.md."""

from atoll.agent.images.overlay import is_mounted, mount_overlay, unmount
from atoll.agent.images.starter import busybox_rootfs_tar
from atoll.agent.images.store import ImageStore

__all__ = ["ImageStore", "busybox_rootfs_tar", "is_mounted", "mount_overlay", "unmount"]
