"""A stopped instance's files as the instance would see them: its root with its volumes and bind mounts
mounted where they belong, for ``docker cp`` (dockerd mounts a container's volumes for its archive
operations too, so ``docker cp c:/data/f .`` reads the volume at ``/data``, not the empty directory
under it).

A running instance needs none of this: ``/proc/<pid>/root`` of its init is exactly what it sees
(``rootview.py``). For a stopped one the view is built under the instance's lock, so nothing starts or
changes meanwhile, in a directory of the instance's own:

1. the merged root is cloned (``open_tree``) and attached at the view directory, then made private, so
   nothing mounted below it propagates anywhere (not to the instance's next start, not to the host);
2. each volume or bind source is cloned and moved (``move_mount``, by descriptor) onto its destination,
   resolved inside the view (``rootpath``), shallowest first as the runtime does; a missing destination
   is made first, as the runtime would at start; read-only mounts are made read-only
   (``mount_setattr``), so ``cp`` into them fails with EROFS as it would inside;
3. afterwards the whole tree is detached (``MNT_DETACH``) and the directory removed.

tmpfs mounts have no content while the instance is stopped and are left out, as with dockerd.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from atoll.agent.runtime.rootpath import resolve_in_root
from atoll.model.errors import RuntimeFailure

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int

SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_FDCWD = -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_RDONLY = 0x1
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


@dataclass(frozen=True)
class ViewMount:
    destination: str
    source: Path
    """A host directory (a volume's data, a bind source) or file (a bind-mounted file)."""
    readonly: bool = False


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise RuntimeFailure(f"{what}: {os.strerror(err)}")
    return result


def _clone(source: Path) -> int:
    """A detached copy of the mount at (or a bind of the directory) ``source``, as a descriptor."""
    return _check(
        _libc.syscall(
            ctypes.c_long(SYS_OPEN_TREE),
            ctypes.c_int(AT_FDCWD),
            ctypes.c_char_p(os.fsencode(source)),
            ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC),
        ),
        f"clone the mount of {source}",
    )


def _set_attr(tree: int, what: str, *, attr_set: int = 0, propagation: int = 0) -> None:
    attr = _MountAttr(attr_set=attr_set, attr_clr=0, propagation=propagation, userns_fd=0)
    _check(
        _libc.syscall(
            ctypes.c_long(SYS_MOUNT_SETATTR),
            ctypes.c_int(tree),
            ctypes.c_char_p(b""),
            ctypes.c_uint(AT_EMPTY_PATH),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        what,
    )


def _move(tree: int, target_fd: int, what: str) -> None:
    _check(
        _libc.syscall(
            ctypes.c_long(SYS_MOVE_MOUNT),
            ctypes.c_int(tree),
            ctypes.c_char_p(b""),
            ctypes.c_int(target_fd),
            ctypes.c_char_p(b""),
            ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
        ),
        what,
    )


def _mountpoint(view: Path, destination: str, is_dir: bool) -> int:
    """An ``O_PATH`` descriptor of ``destination`` inside the view, made if missing (directories, and
    an empty file for a file mount). Resolved inside the view, so the instance's symlinks stay in it."""
    target = resolve_in_root(view, destination)
    if not os.path.lexists(target):
        if is_dir:
            target.mkdir(parents=True, mode=0o755)
        else:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            target.touch(mode=0o644)
    return os.open(target, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)


def _detach(view: Path) -> None:
    if _libc.umount2(os.fsencode(view), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise RuntimeFailure(f"detach {view}: {os.strerror(err)}")


@contextmanager
def mount_view(rootfs: Path, view: Path, mounts: list[ViewMount]) -> Iterator[Path]:
    """``rootfs`` with ``mounts`` on it, at ``view`` (made here, removed after)."""
    view.mkdir(mode=0o700)
    try:
        with ExitStack() as stack:
            tree = _clone(rootfs)
            stack.callback(os.close, tree)
            view_fd = os.open(view, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            stack.callback(os.close, view_fd)
            _move(tree, view_fd, f"attach a view of {rootfs}")
            stack.callback(_detach, view)
            _set_attr(tree, f"make the view at {view} private", propagation=MS_PRIVATE)
            for mount in sorted(mounts, key=lambda m: m.destination.count("/")):
                source = _clone(mount.source)
                try:
                    if mount.readonly:
                        _set_attr(source, f"make {mount.destination} read-only", attr_set=MOUNT_ATTR_RDONLY)
                    target = _mountpoint(view, mount.destination, mount.source.is_dir())
                    try:
                        _move(source, target, f"mount {mount.destination} in the view")
                    finally:
                        os.close(target)
                finally:
                    os.close(source)
            yield view
    finally:
        # rmdir, never a recursive removal: were anything still mounted there, it would stay intact.
        with contextlib.suppress(OSError):
            view.rmdir()
