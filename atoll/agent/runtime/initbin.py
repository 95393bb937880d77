"""Building ``atoll-init``, the container's process 1, from the C source shipped in this package.

It is compiled on the host rather than shipped as a binary so that it always matches the host's
architecture and nobody has to trust a blob. It must be static: it runs inside arbitrary images, which
may have no libc at all (``FROM scratch``) or an incompatible one. musl makes a ~70 KiB binary; glibc's
static build works as a fallback, only bigger.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from atoll.model.errors import RuntimeFailure

SOURCE = Path(__file__).parent / "init" / "atoll-init.c"
BINARY_NAME = "atoll-init"
LAUNCHER_SOURCE = Path(__file__).parent / "init" / "atoll-launch.c"
LAUNCHER_NAME = "atoll-launch"
"""Runs crun inside a container's cgroups on v1 hosts (see owncgroups.py); built the same way."""

# Preferred first. -s strips symbols: nobody debugs PID 1 from inside a container.
_COMPILERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("musl-gcc", ("-static", "-Os", "-s")),
    ("gcc", ("-static", "-Os", "-s")),
)


def _up_to_date(target: Path, source: Path) -> bool:
    try:
        st = target.stat()
    except FileNotFoundError:
        return False
    return st.st_size > 0 and st.st_mtime >= source.stat().st_mtime


def ensure_init_binary(bin_dir: Path) -> Path:
    """Return ``bin_dir/atoll-init``, compiling it first if it is missing or older than the source.

    The binary is compiled under a temporary name and renamed into place, so a concurrent agent or a
    container starting right now never sees a half-written file.
    """
    return _ensure(bin_dir, BINARY_NAME, SOURCE)


def ensure_launcher(bin_dir: Path) -> Path:
    """Return ``bin_dir/atoll-launch``, compiled like ``atoll-init``."""
    return _ensure(bin_dir, LAUNCHER_NAME, LAUNCHER_SOURCE)


def _ensure(bin_dir: Path, name: str, source: Path) -> Path:
    target = bin_dir / name
    if _up_to_date(target, source):
        return target
    bin_dir.mkdir(parents=True, exist_ok=True)
    tmp = bin_dir / f".{name}.{os.getpid()}.tmp"
    errors: list[str] = []
    for compiler, flags in _COMPILERS:
        path = shutil.which(compiler)
        if path is None:
            errors.append(f"{compiler}: not installed")
            continue
        proc = subprocess.run(
            [path, *flags, "-o", str(tmp), str(source)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            tmp.chmod(0o755)
            os.replace(tmp, target)
            return target
        errors.append(f"{compiler}: {proc.stderr.strip() or f'exit status {proc.returncode}'}")
        tmp.unlink(missing_ok=True)
    raise RuntimeFailure(
        f"cannot build {name} (install musl-tools or a static libc for gcc): " + "; ".join(errors)
    )
