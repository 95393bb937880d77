"""nftables in-process, through libnftables: the library the ``nft`` binary is built on (Debian
``libnftables1``, installed with ``nftables``), with the same parser and the same netlink transaction.

Why: spawning ``nft`` costs a fork and exec and the binary's start-up, 3-15 ms per call on a busy
host, and the agent loads rules for every container it starts and removes; a call through the library
costs ~0.2 ms plus the kernel's work. Debian's ``python3-nftables`` wraps the same library, but it is
a system package outside the project's virtualenv; the five functions used here are called through
``ctypes`` instead.

Each call makes its own context, so the netlink socket is opened in the calling thread's network
namespace (the dataplane runs its work inside the host namespace it was given, see ``netns.run_in``);
calls are serialised, as the library keeps some state process-wide. Without the library, ``available``
is False and callers spawn ``nft`` as before.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

_JSON = 1 << 4
"""``NFT_CTX_OUTPUT_JSON`` of ``enum nft_output_flags`` (libnftables.h)."""

_lock = threading.Lock()


@dataclass(frozen=True)
class Result:
    ok: bool
    output: str
    error: str


def _load() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL("libnftables.so.1")
    except OSError:
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    for getter in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
        getter.argtypes = [ctypes.c_void_p]
        getter.restype = ctypes.c_char_p
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    return lib


_lib = _load()
available = _lib is not None


def run(commands: str, *, json: bool = False) -> Result:
    """Run ``commands`` (an ``nft -f`` script, or one command) as ``nft`` would, in the calling thread's
    network namespace: a script is one transaction, all of it or nothing."""
    if _lib is None:
        raise RuntimeError("libnftables is not available")
    with _lock:
        ctx = _lib.nft_ctx_new(0)  # NFT_CTX_DEFAULT
        if not ctx:
            raise MemoryError("nft_ctx_new")
        try:
            if json:
                _lib.nft_ctx_output_set_flags(ctx, _JSON)
            _lib.nft_ctx_buffer_output(ctx)
            _lib.nft_ctx_buffer_error(ctx)
            status = _lib.nft_run_cmd_from_buffer(ctx, commands.encode())
            output = (_lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
            error = (_lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
        finally:
            _lib.nft_ctx_free(ctx)
    return Result(ok=status == 0, output=output, error=error)
