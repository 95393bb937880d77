"""A thin, typed layer over libbpf (Debian's ``libbpf1``) through ctypes: load an eBPF object file,
reach its programs and maps, attach a program to a device's tc ingress hook.

libbpf does what would be error-prone by hand: CO-RE relocations against the running kernel's BTF
(``/sys/kernel/btf/vmlinux``), resolving kfunc calls, creating the maps. The tc calls work in the
calling thread's network namespace, like ``netlink``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path
from typing import Any

from atoll.model.errors import RuntimeFailure

_TC_INGRESS = 1  # enum bpf_tc_attach_point: BPF_TC_INGRESS
_TC_F_REPLACE = 1
BPF_ANY = 0
HANDLE = 1
PRIORITY = 1
"""Our filter's handle and priority on every device: a new program replaces the old one in place."""


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


def _library() -> Any:
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        raise RuntimeFailure(f"libbpf is not installed ({e})") from e
    for fn in ("bpf_object__open_file", "bpf_object__find_program_by_name", "bpf_object__find_map_by_name"):
        getattr(lib, fn).restype = ctypes.c_void_p
    lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.bpf_object__load.argtypes = [ctypes.c_void_p]
    lib.bpf_object__close.argtypes = [ctypes.c_void_p]
    lib.bpf_object__find_program_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.bpf_object__find_map_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.bpf_program__fd.argtypes = [ctypes.c_void_p]
    lib.bpf_map__fd.argtypes = [ctypes.c_void_p]
    for fn in ("bpf_map_update_elem",):
        getattr(lib, fn).argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]
    lib.bpf_map_lookup_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.bpf_map_delete_elem.argtypes = [ctypes.c_int, ctypes.c_void_p]
    lib.bpf_tc_hook_create.argtypes = [ctypes.POINTER(_TcHook)]
    lib.bpf_tc_attach.argtypes = [ctypes.POINTER(_TcHook), ctypes.POINTER(_TcOpts)]
    return lib


_lib: Any = None


def lib() -> Any:
    global _lib
    if _lib is None:
        _lib = _library()
    return _lib


def _failed(what: str, result: int) -> RuntimeFailure:
    code = -result if result < 0 else ctypes.get_errno()
    return RuntimeFailure(f"{what}: {os.strerror(code)}")


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
        result = self._lib.bpf_object__load(obj)
        if result != 0:
            self._lib.bpf_object__close(obj)
            raise _failed(f"the kernel refused eBPF object {path.name}", result)
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


def attach_ingress(ifindex: int, prog_fd: int) -> None:
    """Run the program on every frame the device receives (tc ingress, direct action), in place of
    the one attached before (ours: same handle and priority). In the calling thread's namespace."""
    hook = _TcHook(sz=ctypes.sizeof(_TcHook), ifindex=ifindex, attach_point=_TC_INGRESS)
    result = lib().bpf_tc_hook_create(ctypes.byref(hook))
    if result != 0 and -result != errno.EEXIST:
        raise _failed(f"could not add a clsact qdisc to link {ifindex}", result)
    opts = _TcOpts(
        sz=ctypes.sizeof(_TcOpts), prog_fd=prog_fd, flags=_TC_F_REPLACE, handle=HANDLE, priority=PRIORITY
    )
    result = lib().bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
    if result != 0:
        raise _failed(f"could not attach an eBPF program to link {ifindex}", result)
