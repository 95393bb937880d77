"""Pull speed from a loopback registry, against ``skopeo copy`` in the same run (``python -m bench.pull``).

The image (~200 MB in 8 gzip layers of random files) is built here and put into a real registry
(Debian's ``docker-registry``) started on 127.0.0.1. Atoll's pull is timed end to end into a fresh
layer store: manifests, parallel downloads verified against their digests, and every layer unpacked
and installed. The baseline is ``skopeo copy docker://... oci:DIR``, which downloads and verifies the
same blobs but unpacks nothing. Best of three runs each. The last line printed is one JSON object.
Pass a directory to put the store and the copies on another file system (default: a temp dir on /tmp).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from atoll.agent.images import ImageStore
from atoll.agent.registry.options import RegistryOptions
from atoll.agent.registry.service import Registries
from atoll.model.registry import Pulled
from tests.images import factory
from tests.registry.server import REGISTRY, running_registry, upload

LAYERS = 8
LAYER_BYTES = 25 << 20
FILES_PER_LAYER = 25
RUNS = 3


def build_image() -> factory.Image:
    layers = []
    for n in range(LAYERS):
        size = LAYER_BYTES // FILES_PER_LAYER
        files = [factory.file(f"layer{n}/f{i}", os.urandom(size)) for i in range(FILES_PER_LAYER)]
        layers.append(factory.layer(*files))
    return factory.Image(layers=layers)


async def atoll_pull(base: Path, host: str, ref: str) -> float:
    store = ImageStore(base / "store")
    regs = Registries(store, RegistryOptions(insecure=frozenset({host})))
    try:
        os.sync()
        start = time.perf_counter()
        async for event in regs.pull(ref, {}):
            if isinstance(event, Pulled):
                elapsed = time.perf_counter() - start
        return elapsed
    finally:
        await regs.close()
        shutil.rmtree(base / "store")


def skopeo_copy(base: Path, ref: str) -> float:
    dest = base / "oci"
    os.sync()
    start = time.perf_counter()
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"oci:{dest}:x"],
        check=True,
    )
    elapsed = time.perf_counter() - start
    shutil.rmtree(dest)
    return elapsed


def main() -> None:
    if not Path(REGISTRY).exists() or not shutil.which("skopeo"):
        sys.exit("bench/pull.py needs docker-registry and skopeo: run scripts/setup-system")
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.gettempdir())
    base = Path(tempfile.mkdtemp(prefix="bench-pull-", dir=where))
    try:
        image = build_image()
        size = sum(len(factory.gz(t)) for t in image.layers[:1]) * LAYERS
        with running_registry(base / "registry") as reg:
            upload(reg, "bench/big", "1", image)
            ref = f"{reg.host}/bench/big:1"
            ours = min(asyncio.run(atoll_pull(base, reg.host, ref)) for _ in range(RUNS))
            theirs = min(skopeo_copy(base, ref) for _ in range(RUNS))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    mb = size / 1e6
    print(f"image: {LAYERS} layers, {mb:.0f} MB compressed")
    print(f"atoll pull (download, verify, unpack): {ours:.2f} s, {mb / ours:.0f} MB/s")
    print(f"skopeo copy docker:// oci: (download, verify): {theirs:.2f} s, {mb / theirs:.0f} MB/s")
    print(f"ratio atoll/skopeo: {ours / theirs:.2f}x (lower is faster)")
    print(
        json.dumps(
            {
                "bench": "pull",
                "layers": LAYERS,
                "mb": round(mb),
                "atoll_s": round(ours, 3),
                "skopeo_s": round(theirs, 3),
                "ratio": round(ours / theirs, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
