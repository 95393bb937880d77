"""Mount and unmount overlayfs root filesystems with direct system calls (ctypes; no fork, no mount(8)).

The classic ``mount(2)`` takes all options in one string of at most a page (4 KiB): with store paths
of ~100 bytes that caps an image at about 40 layers. We avoid the limit instead of failing at it:

1. The new mount API (``fsopen``/``fsconfig``/``fsmount``/``move_mount``, Linux 5.2) with overlayfs'
   ``lowerdir+`` key (Linux 6.8): one system call per layer, no length limit, real paths in
   /proc/self/mountinfo. This is the path taken on current kernels.
2. Older kernels: ``mount(2)``, naming each directory by an open ``O_PATH`` fd, ``/proc/self/fd/N``
   (overlayfs resolves the magic link when it mounts), which fits ~200 layers in a page. Only if even
   that is too long does it fail, with a RuntimeFailure that says so.

``lowers`` are given bottom first, like ``ImageRecord.layers``; overlayfs wants the top first.

``volatile`` (Linux 5.10) is for writable layers that are thrown away after one run (``--rm``): the
kernel then skips syncing the upper filesystem, which otherwise makes every unmount a ``syncfs`` of
the whole disk the upper layer lives on (tens of ms on a busy host). The price is that the layer may
be inconsistent after a host crash, and overlayfs refuses to mount it again while its marker
(``work/work/incompat/volatile``) exists; such a layer is never used again, except when its removal
failed and it is started once more, so the marker is cleared before a volatile mount.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from atoll.model.errors import RuntimeFailure

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int
_libc.syscall.restype = ctypes.c_long

# The new mount API's numbers are the same on every architecture (allocated after the 4.x unification).
SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class _Unsupported(Exception):
    """The running kernel lacks the new mount API or ``lowerdir+``."""


def mount_overlay(
    lowers: Sequence[Path], upper: Path, work: Path, target: Path, *, volatile: bool = False
) -> None:
    """Mount an overlay of ``lowers`` (bottom first) with ``upper``/``work`` on ``target``."""
    if not lowers:
        raise RuntimeFailure("overlay mount needs at least one lower layer")
    top_first = [os.path.abspath(p) for p in reversed(lowers)]
    upper_s, work_s, target_s = (os.path.abspath(p) for p in (upper, work, target))
    if volatile:
        shutil.rmtree(Path(work_s) / "work" / "incompat" / "volatile", ignore_errors=True)
    try:
        _mount_fsconfig(top_first, upper_s, work_s, target_s, volatile)
    except _Unsupported:
        mount_overlay_legacy(top_first, upper_s, work_s, target_s, volatile)


def unmount(target: Path) -> None:
    """Unmount whatever is mounted on ``target`` (all stacked mounts). Idempotent.

    A busy mount (EBUSY) is detached lazily (MNT_DETACH): it disappears now and is freed once unused.
    """
    path = os.fsencode(os.path.abspath(target))
    for _ in range(64):
        if _libc.umount2(path, UMOUNT_NOFOLLOW) == 0:
            continue
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return  # not (or no longer) a mount point
        if err == errno.EBUSY and _libc.umount2(path, UMOUNT_NOFOLLOW | MNT_DETACH) == 0:
            continue
        err = ctypes.get_errno()
        raise RuntimeFailure(f"unmount {target}: {os.strerror(err)}")
    raise RuntimeFailure(f"unmount {target}: still mounted after 64 unmounts")


def is_mounted(target: Path) -> bool:
    """Whether ``target`` is a mount point (of anything), per /proc/self/mountinfo."""
    path = os.path.realpath(target)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(b" ", 5)
            if len(fields) > 4 and _unescape(fields[4]) == os.fsencode(path):
                return True
    return False


def _unescape(field: bytes) -> bytes:
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), field)


def _syscall(number: int, *args: int | bytes | None) -> int:
    """``syscall(2)`` with every argument passed as a full register: a long, or a char* (None is NULL)."""
    cargs = [ctypes.c_long(a) if isinstance(a, int) else ctypes.c_char_p(a) for a in args]
    result: int = _libc.syscall(ctypes.c_long(number), *cargs)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _mount_fsconfig(top_first: list[str], upper: str, work: str, target: str, volatile: bool = False) -> None:
    try:
        fs_fd = _syscall(SYS_FSOPEN, b"overlay", FSOPEN_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):  # EPERM: a seccomp filter that predates the API
            raise _Unsupported from exc
        raise RuntimeFailure(f"overlay mount on {target}: fsopen: {exc.strerror}") from exc
    try:
        for lower in top_first:
            _set(fs_fd, "lowerdir+", lower)
        _set(fs_fd, "upperdir", upper)
        _set(fs_fd, "workdir", work)
        if volatile:
            _syscall(SYS_FSCONFIG, fs_fd, FSCONFIG_SET_FLAG, b"volatile", None, 0)
        _syscall(SYS_FSCONFIG, fs_fd, FSCONFIG_CMD_CREATE, None, None, 0)
        mnt_fd = _syscall(SYS_FSMOUNT, fs_fd, FSMOUNT_CLOEXEC, 0)
        try:
            _syscall(SYS_MOVE_MOUNT, mnt_fd, b"", AT_FDCWD, os.fsencode(target), MOVE_MOUNT_F_EMPTY_PATH)
        finally:
            os.close(mnt_fd)
    except OSError as exc:
        detail = _messages(fs_fd) or exc.strerror or str(exc)
        if exc.errno == errno.EINVAL and "Unknown parameter 'lowerdir+'" in detail:
            raise _Unsupported from exc
        raise RuntimeFailure(f"overlay mount on {target} ({len(top_first)} layers): {detail}") from exc
    finally:
        os.close(fs_fd)


def _set(fs_fd: int, key: str, value: str) -> None:
    _syscall(SYS_FSCONFIG, fs_fd, FSCONFIG_SET_STRING, key.encode(), os.fsencode(value), 0)


def _messages(fs_fd: int) -> str:
    """The kernel's messages for this mount context: it logs them to the fd, not to dmesg."""
    lines = []
    while True:
        try:
            line = os.read(fs_fd, 4096)
        except OSError:
            break
        if not line:
            break
        lines.append(line.decode(errors="replace").strip())
    return "; ".join(x for x in lines if x)


def mount_overlay_legacy(
    top_first: Sequence[str], upper: str, work: str, target: str, volatile: bool = False
) -> None:
    """``mount(2)`` with one option string, for kernels without ``lowerdir+`` (``top_first``: top first)."""
    fds: list[int] = []
    try:

        def short(path: str) -> str:
            fds.append(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
            return f"/proc/self/fd/{fds[-1]}"

        options = f"lowerdir={':'.join(top_first)},upperdir={upper},workdir={work}"
        if len(options) >= PAGE_SIZE or any(c in p for p in (*top_first, upper, work) for c in ",:\\"):
            lowerdir = ":".join(short(p) for p in top_first)
            options = f"lowerdir={lowerdir},upperdir={short(upper)},workdir={short(work)}"
        if volatile:
            options += ",volatile"
        if len(options) >= PAGE_SIZE:
            raise RuntimeFailure(
                f"overlay mount on {target}: {len(top_first)} layers need {len(options)} bytes of mount "
                f"options; this kernel takes at most {PAGE_SIZE - 1} (it lacks lowerdir+, Linux 6.8)"
            )
        if _libc.mount(b"overlay", os.fsencode(target), b"overlay", 0, options.encode()) != 0:
            err = ctypes.get_errno()
            raise RuntimeFailure(f"overlay mount on {target} ({len(top_first)} layers): {os.strerror(err)}")
    finally:
        for fd in fds:
            os.close(fd)
