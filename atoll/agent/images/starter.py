"""A starter root filesystem from the host's static busybox, so a fresh cloud can run something offline.

The tar is deterministic (sorted entries, fixed owners, busybox's own mtime), so building it twice
gives the same layer digest and, with the same ``created``, the same image id. Busybox must be
statically linked (Debian: ``busybox-static``): the image carries no C library.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import tarfile
from pathlib import Path

from atoll.model.errors import RuntimeFailure

_DIRS = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "proc": 0o755,
    "root": 0o700,
    "sbin": 0o755,
    "sys": 0o755,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
    "var/tmp": 0o1777,
}
_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "etc/group": "root:x:0:\nnobody:x:65534:\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "etc/nsswitch.conf": "hosts: files dns\n",
}


def busybox_rootfs_tar(dest: Path, busybox: Path = Path("/bin/busybox")) -> None:
    """Write an uncompressed tar of a minimal root filesystem: busybox, one symlink per applet, /etc."""
    if _is_dynamic(busybox):
        raise RuntimeFailure(f"{busybox} is dynamically linked; the starter image needs a static busybox")
    applets = _applets(busybox)
    mtime = int(busybox.stat().st_mtime)
    dirs = dict(_DIRS)
    for applet in applets:
        parent = os.path.dirname(applet)
        while parent and parent not in dirs:
            dirs[parent] = 0o755
            parent = os.path.dirname(parent)
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs):
            tar.addfile(_info(name, tarfile.DIRTYPE, dirs[name], mtime))
        info = _info("bin/busybox", tarfile.REGTYPE, 0o755, mtime)
        info.size = busybox.stat().st_size
        with open(busybox, "rb") as f:
            tar.addfile(info, f)
        for applet in sorted(applets):
            if applet == "bin/busybox":
                continue
            link = _info(applet, tarfile.SYMTYPE, 0o777, mtime)
            link.linkname = "busybox" if os.path.dirname(applet) == "bin" else "/bin/busybox"
            tar.addfile(link)
        for name, text in sorted(_FILES.items()):
            data = text.encode()
            info = _info(name, tarfile.REGTYPE, 0o644, mtime)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, dest)


def _info(name: str, kind: bytes, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    info.uname = info.gname = "root"
    return info


def _applets(busybox: Path) -> list[str]:
    """Install paths (``bin/sh``, ``usr/bin/wget``), or everything in bin/ if --list-full is missing."""
    for flag, prefix in (("--list-full", ""), ("--list", "bin/")):
        result = subprocess.run([busybox, flag], capture_output=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            names = [prefix + line.strip().lstrip("/") for line in result.stdout.decode().splitlines()]
            return [n for n in names if n and ".." not in n.split("/")]
    raise RuntimeFailure(f"{busybox} --list failed: is it busybox?")


def _is_dynamic(binary: Path) -> bool:
    """True if the ELF file has a PT_INTERP program header (it needs a dynamic loader)."""
    with open(binary, "rb") as f:
        ident = f.read(64)
        if len(ident) < 64 or ident[:4] != b"\x7fELF":
            raise RuntimeFailure(f"{binary} is not an ELF executable")
        is64, little = ident[4] == 2, ident[5] == 1
        end = "<" if little else ">"
        (phoff,) = struct.unpack_from(end + ("Q" if is64 else "I"), ident, 32 if is64 else 28)
        phentsize, phnum = struct.unpack_from(end + "HH", ident, 54 if is64 else 42)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            (p_type,) = struct.unpack(end + "I", f.read(4))
            if p_type == 3:  # PT_INTERP
                return True
    return False
