"""A thin, typed layer over libbpf (Debian's ``libbpf1``) through ctypes: load an eBPF object file,
reach its programs and maps, attach a program to a device's tc ingress hook.

libbpf does what would be error-prone by hand: CO-RE relocations against the running kernel's BTF
(``/sys/kernel/btf/vmlinux``), resolving kfunc calls, creating the maps. The tc calls work in the
calling thread's network namespace, like ``netlink``.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import errno
import logging
import os
from pathlib import Path
from typing import Any

from atoll.model.errors import RuntimeFailure

log = logging.getLogger(__name__)

_TC_INGRESS = 1  # enum bpf_tc_attach_point: BPF_TC_INGRESS
_TC_F_REPLACE = 1
BPF_ANY = 0
HANDLE = 1
PRIORITY = 1
"""Our filter's handle and priority on the devices we make: a new program replaces the old one in place."""


class _TcHook(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("ifindex", ctypes.c_int),
        ("attach_point", ctypes.c_int),
        ("parent", ctypes.c_uint32),
    ]


class _TcOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("prog_fd", ctypes.c_int),
        ("flags", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("handle", ctypes.c_uint32),
        ("priority", ctypes.c_uint32),
    ]


_PRINT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_said: collections.deque[str] = collections.deque(maxlen=40)
"""libbpf's last messages: the tail of a refused program's verifier log goes into the error raised."""


def _libc_vsnprintf() -> Any:
    libc = ctypes.CDLL(None)
    libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
    return libc.vsnprintf


_vsnprintf = _libc_vsnprintf()


_DEBUG = 2  # enum libbpf_print_level: LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG


def _print(level: int, fmt: bytes, args: int) -> int:
    """libbpf's messages go to our log (debug), not to stderr: it also reports, as warnings, answers
    that are expected here (a clsact qdisc that exists already, a filter that is not there)."""
    if level >= _DEBUG:
        return 0  # CO-RE relocations, one line each: not worth formatting
    buffer = ctypes.create_string_buffer(2048)
    _vsnprintf(buffer, len(buffer), fmt, args)
    text = buffer.value.decode(errors="replace").rstrip()
    _said.append(text)
    log.debug("%s", text)
    return 0


_print_callback = _PRINT(_print)
"""Kept referenced for as long as libbpf may call it (the life of the process)."""


def _library() -> Any:
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        raise RuntimeFailure(f"libbpf is not installed ({e})") from e
    lib.libbpf_set_print.argtypes = [_PRINT]
    lib.libbpf_set_print.restype = ctypes.c_void_p
    lib.libbpf_set_print(_print_callback)
    for fn in ("bpf_object__open_file", "bpf_object__find_program_by_name", "bpf_object__find_map_by_name"):
        getattr(lib, fn).restype = ctypes.c_void_p
    lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.bpf_object__load.argtypes = [ctypes.c_void_p]
    lib.bpf_object__close.argtypes = [ctypes.c_void_p]
    lib.bpf_object__find_program_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.bpf_object__find_map_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.bpf_program__fd.argtypes = [ctypes.c_void_p]
    lib.bpf_map__fd.argtypes = [ctypes.c_void_p]
    lib.bpf_map_update_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]
    lib.bpf_map_lookup_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.bpf_map_delete_elem.argtypes = [ctypes.c_int, ctypes.c_void_p]
    lib.bpf_tc_hook_create.argtypes = [ctypes.POINTER(_TcHook)]
    lib.bpf_tc_attach.argtypes = [ctypes.POINTER(_TcHook), ctypes.POINTER(_TcOpts)]
    lib.bpf_tc_detach.argtypes = [ctypes.POINTER(_TcHook), ctypes.POINTER(_TcOpts)]
    lib.bpf_tc_query.argtypes = [ctypes.POINTER(_TcHook), ctypes.POINTER(_TcOpts)]
    return lib


_lib: Any = None


def lib() -> Any:
    global _lib
    if _lib is None:
        _lib = _library()
    return _lib


def _failed(what: str, result: int, told: str = "") -> RuntimeFailure:
    code = -result if result < 0 else ctypes.get_errno()
    return RuntimeFailure(f"{what}: {os.strerror(code)}" + (f"; libbpf said:\n{told}" if told else ""))


class Map:
    """One map of a loaded object, by its file descriptor; keys and values are ctypes objects of the
    map's key and value sizes."""

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self.fd = fd

    def update(self, key: Any, value: Any) -> None:
        result = lib().bpf_map_update_elem(self.fd, ctypes.byref(key), ctypes.byref(value), BPF_ANY)
        if result != 0:
            raise _failed(f"could not write to eBPF map {self.name}", result)

    def delete(self, key: Any) -> None:
        result = lib().bpf_map_delete_elem(self.fd, ctypes.byref(key))
        if result != 0 and -result != errno.ENOENT:
            raise _failed(f"could not delete from eBPF map {self.name}", result)

    def lookup(self, key: Any, value: Any) -> bool:
        """Fill ``value`` with the entry of ``key``; False if there is none."""
        return bool(lib().bpf_map_lookup_elem(self.fd, ctypes.byref(key), ctypes.byref(value)) == 0)


class BpfObject:
    """An eBPF object file, loaded into the kernel. Its programs stay loaded while a tc filter uses
    them, after this object (and the process) is gone."""

    def __init__(self, path: Path) -> None:
        self._lib = lib()
        obj = self._lib.bpf_object__open_file(str(path).encode(), None)
        if not obj:
            raise _failed(f"could not open eBPF object {path}", -ctypes.get_errno())
        _said.clear()
        result = self._lib.bpf_object__load(obj)
        if result != 0:
            self._lib.bpf_object__close(obj)
            told = "\n".join(list(_said)[-15:])
            raise _failed(f"the kernel refused eBPF object {path.name}", result, told)
        self._obj: int | None = obj

    def program_fd(self, name: str) -> int:
        prog = self._lib.bpf_object__find_program_by_name(self._obj, name.encode())
        if not prog:
            raise RuntimeFailure(f"eBPF program {name} is not in the object")
        return int(self._lib.bpf_program__fd(prog))

    def map(self, name: str) -> Map:
        found = self._lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not found:
            raise RuntimeFailure(f"eBPF map {name} is not in the object")
        return Map(name, int(self._lib.bpf_map__fd(found)))

    def close(self) -> None:
        if self._obj is not None:
            self._lib.bpf_object__close(self._obj)
            self._obj = None


def _hook(ifindex: int) -> _TcHook:
    return _TcHook(sz=ctypes.sizeof(_TcHook), ifindex=ifindex, attach_point=_TC_INGRESS)


def attach_ingress(ifindex: int, prog_fd: int, *, handle: int = HANDLE, priority: int = PRIORITY) -> None:
    """Run the program on every frame the device receives (tc ingress, direct action), in place of
    the one attached before at this handle and priority. In the calling thread's namespace."""
    hook = _hook(ifindex)
    result = lib().bpf_tc_hook_create(ctypes.byref(hook))
    if result != 0 and -result != errno.EEXIST:
        raise _failed(f"could not add a clsact qdisc to link {ifindex}", result)
    opts = _TcOpts(
        sz=ctypes.sizeof(_TcOpts), prog_fd=prog_fd, flags=_TC_F_REPLACE, handle=handle, priority=priority
    )
    result = lib().bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
    if result != 0:
        raise _failed(f"could not attach an eBPF program to link {ifindex}", result)


def detach_ingress(ifindex: int, *, handle: int, priority: int) -> bool:
    """Remove the filter at this handle and priority from the device's ingress, if there is one (the
    clsact qdisc stays: other filters may hang on it). True if one was removed."""
    hook = _hook(ifindex)
    opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), handle=handle, priority=priority)
    result = lib().bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))
    if result != 0 and -result not in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
        raise _failed(f"could not detach the eBPF program from link {ifindex}", result)
    return bool(result == 0)
