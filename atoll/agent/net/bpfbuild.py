"""The fast path's eBPF program, built from its C source with clang, once per source text.

The object is the same for every kernel: the program reads kernel structures through CO-RE
relocations, which libbpf fits to the running kernel's BTF when it loads the object (``libbpf``). So
it is built where the agent runs, into ``ATOLL_BPF_CACHE`` (default /var/cache/atoll/bpf), named by
the hash of its source: a new source is a new file, and a concurrent build of the same source writes
the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import threading
from pathlib import Path

from atoll.model.errors import RuntimeFailure

SOURCE = Path(__file__).with_name("bpf") / "fastpath.c"
DEFAULT_CACHE = "/var/cache/atoll/bpf"


def _compiler() -> str:
    found = shutil.which("clang") or next(
        (path for v in range(30, 10, -1) if (path := shutil.which(f"clang-{v}"))), None
    )
    if found is None:
        raise RuntimeFailure("clang is not installed (Debian: clang, libbpf-dev)")
    return found


def build() -> Path:
    """The program's object file, compiled once per source text (a new source, a new file) into
    ``ATOLL_BPF_CACHE``. The object is the same for every kernel (CO-RE: libbpf fits it at load)."""
    source = SOURCE.read_bytes()
    cache = Path(os.environ.get("ATOLL_BPF_CACHE") or DEFAULT_CACHE)
    target = cache / f"fastpath-{hashlib.sha256(source).hexdigest()[:16]}.o"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    multiarch = Path(f"/usr/include/{platform.machine()}-linux-gnu")  # asm/types.h on Debian
    partial = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    command = [_compiler(), "-O2", "-g", "-target", "bpf", "-Wall", "-Werror"]
    command += [f"-I{multiarch}"] if multiarch.is_dir() else []
    result = subprocess.run(
        [*command, "-c", str(SOURCE), "-o", str(partial)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeFailure(f"could not build {SOURCE.name}: {result.stderr.strip()[-2000:]}")
    partial.replace(target)  # atomic: a concurrent build of the same source writes the same bytes
    return target
