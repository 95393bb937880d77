"""Unpack speed of ~100 MB layers, against GNU tar in the same run (``python -m bench.unpack``).

Not a test: it prints MB/s and ratios; the last line is one JSON object.
Pass a directory to measure on another file system (default: /dev/shm).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from atoll.agent.images.layers import unpack_rootfs
from tests.images.factory import file, layer

LAYERS: dict[str, Callable[[], bytes]] = {
    "100 x 1 MiB": lambda: layer(*(file(f"big/{i}", os.urandom(1 << 20)) for i in range(100))),
    "10000 x 10 KiB": lambda: layer(
        *(file(f"small/{i // 100}/{i}", os.urandom(5120) + bytes(5120)) for i in range(10_000))
    ),
}


def best_of(runs: int, work: Callable[[Path], None], base: Path) -> float:
    best = float("inf")
    for i in range(runs):
        dest = base / f"run{i}"
        dest.mkdir()
        os.sync()
        start = time.perf_counter()
        work(dest)
        best = min(best, time.perf_counter() - start)
        shutil.rmtree(dest)
    return best


def _ours(path: Path, dest: Path) -> None:
    unpack_rootfs(path, dest, "bench")


def _gnu_tar(tar: str, flag: str, path: Path, dest: Path) -> None:
    subprocess.run([tar, flag, str(path), "-C", str(dest)], check=True)


def main() -> None:
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/dev/shm")
    gnu_tar = shutil.which("tar")
    figures: dict[str, int] = {}
    for name, make in LAYERS.items():
        data = make()
        megabytes = len(data) / 1e6
        base = Path(tempfile.mkdtemp(dir=where))
        try:
            for label, blob, flag in (("tar", data, "-xpf"), ("tar.gz", gzip.compress(data, 6), "-xzpf")):
                path = base / f"layer.{label}"
                path.write_bytes(blob)
                ours = best_of(3, partial(_ours, path), base)
                line = f"{name} ({megabytes:.0f} MB) {label}: {megabytes / ours:.0f} MB/s"
                if gnu_tar:
                    theirs = best_of(3, partial(_gnu_tar, gnu_tar, flag, path), base)
                    line += f"; GNU tar {megabytes / theirs:.0f} MB/s; ratio {theirs / ours:.2f}"
                    figures[f"{name} {label} gnu_tar_mb_s"] = round(megabytes / theirs)
                figures[f"{name} {label} mb_s"] = round(megabytes / ours)
                print(line)
        finally:
            shutil.rmtree(base)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
