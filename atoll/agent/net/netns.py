"""Network namespaces that outlive their processes, and code run inside a namespace.

An instance with ports gets a namespace of its own, created by the agent (not by the runtime) and kept
alive by a bind mount of its nsfs file at ``<run_dir>/netns/<instance id>``, as ``ip netns`` does under
/run/netns. The runtime is told to join that path, so the instance keeps its interfaces, address and
MAC across stop and start, and the agent can wire the namespace before the first process exists.

Joining a namespace is per thread (``setns(2)`` with CLONE_NEWNET is allowed in a multi-threaded
process). ``run_in`` therefore runs a function in a *fresh* thread that joins the namespace and then
ends: no pooled thread is ever left in a foreign namespace. Netlink sockets and ``/proc/sys/net`` follow
the thread that opens them, and a subprocess forked from that thread starts in its namespace.

Creating a namespace goes the same way: a fresh thread calls ``unshare(CLONE_NEWNET)`` and bind-mounts
``/proc/thread-self/ns/net`` onto the target file.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from atoll.agent.images.overlay import unmount
from atoll.model.errors import RuntimeFailure

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
MS_BIND = 4096

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _join(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {path}")
    finally:
        os.close(fd)


def run_in(netns: Path | None, fn: Callable[[], T]) -> T:
    """``fn()`` in the network namespace at ``netns``; in the caller's thread when ``netns`` is None.

    Blocking: call it from a worker thread (``asyncio.to_thread``), never from the event loop."""
    if netns is None:
        return fn()
    return _in_fresh_thread(lambda: _join(netns), fn)


def _in_fresh_thread(enter: Callable[[], None], fn: Callable[[], T]) -> T:
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            enter()
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="atoll-netns", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def is_netns(path: Path) -> bool:
    """Whether ``path`` is a mounted namespace file (not merely an empty file left by a crash)."""
    try:
        st = os.stat(path)
        parent = os.stat(path.parent)
    except OSError:
        return False
    return st.st_dev != parent.st_dev  # a mount point: nsfs is another device than its directory


def create(path: Path, setup: Callable[[], None] | None = None) -> None:
    """Make a new, persistent network namespace at ``path`` and run ``setup`` inside it. Idempotent: an
    existing namespace is kept (and ``setup`` still runs in it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_netns(path):
        if setup is not None:
            run_in(path, setup)
        return

    def enter() -> None:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
        except OSError as exc:
            raise RuntimeFailure(f"netns {path}: {exc.strerror}") from exc
        os.close(fd)
        _check(
            _libc.mount(b"/proc/thread-self/ns/net", os.fsencode(path), b"none", MS_BIND, None), "bind mount"
        )

    try:
        _in_fresh_thread(enter, setup or (lambda: None))
    except OSError as exc:
        remove(path)
        raise RuntimeFailure(f"could not create the network namespace {path}: {exc}") from exc
    except BaseException:
        remove(path)
        raise


def adopt(path: Path, pid: int) -> None:
    """Keep the network namespace that process ``pid`` is in at ``path`` (the bind mount ``create``
    makes), so a running instance whose namespace the runtime made can be wired like any other.
    Idempotent: an existing namespace at ``path`` is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_netns(path):
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
        os.close(fd)
        _check(
            _libc.mount(os.fsencode(f"/proc/{pid}/ns/net"), os.fsencode(path), b"none", MS_BIND, None),
            "bind mount",
        )
    except OSError as exc:
        remove(path)
        raise RuntimeFailure(
            f"could not keep the network namespace of process {pid} at {path}: {exc}"
        ) from exc


def remove(path: Path) -> None:
    """Unmount and delete a namespace file. The namespace itself (and every interface in it) goes once no
    process is left in it. Idempotent."""
    unmount(path)
    try:
        path.unlink()
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise RuntimeFailure(f"remove {path}: {exc.strerror}") from exc
