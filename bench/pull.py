"""Pull speed from a loopback registry, against ``skopeo copy`` and ``docker pull`` in the same run.

``python -m bench.pull [DIR]``. The image (~200 MB in 8 gzip layers of random files) is built here and
put into a real registry (Debian's ``docker-registry``) started on 127.0.0.1. Atoll's pull is timed end
to end into a fresh layer store: manifests, parallel downloads verified against their digests, and
every layer unpacked and installed. The baselines, run in turn with it (so machine load hits all three
alike): ``skopeo copy docker://... oci:DIR``, which downloads and verifies the same blobs but unpacks
nothing; and ``docker pull`` into a private stock dockerd (``tests/docker/stock.py``; it treats
127.0.0.0/8 registries as insecure by default), which downloads, verifies and unpacks like Atoll, the
image removed again between runs. Best of three runs each, and the load average. The last line printed
is one JSON object. Pass a directory to put the stores on another file system (default: /tmp).
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
import uuid
from pathlib import Path

from atoll.agent.images import ImageStore
from atoll.agent.registry.options import RegistryOptions
from atoll.agent.registry.service import Registries
from atoll.model.registry import Pulled
from tests.docker.stock import DockerdUnavailable, StockDockerd
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


def docker_pull(daemon: StockDockerd, ref: str) -> float:
    os.sync()
    start = time.perf_counter()
    done = daemon.docker("pull", "-q", ref, timeout=300)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"docker pull failed: {done.stderr}")
    daemon.docker("rmi", ref, timeout=120)
    return elapsed


def start_dockerd(base: Path) -> StockDockerd | None:
    daemon = StockDockerd(base=base / "dockerd", cgroup_parent=f"bench-pull-{uuid.uuid4().hex[:6]}")
    try:
        daemon.start()
    except DockerdUnavailable as exc:
        print(f"(no docker pull baseline: {exc})")
        daemon.stop()
        return None
    return daemon


def main() -> None:
    if not Path(REGISTRY).exists() or not shutil.which("skopeo"):
        sys.exit("bench/pull.py needs docker-registry and skopeo: run scripts/setup-system")
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.gettempdir())
    base = Path(tempfile.mkdtemp(prefix="bench-pull-", dir=where))
    best: dict[str, float] = {}
    loads = []
    try:
        image = build_image()
        size = sum(len(factory.gz(t)) for t in image.layers[:1]) * LAYERS
        daemon = start_dockerd(base)
        try:
            with running_registry(base / "registry") as reg:
                upload(reg, "bench/big", "1", image)
                ref = f"{reg.host}/bench/big:1"
                for _ in range(RUNS):
                    times = {
                        "atoll": asyncio.run(atoll_pull(base, reg.host, ref)),
                        "skopeo": skopeo_copy(base, ref),
                    }
                    if daemon is not None:
                        times["docker"] = docker_pull(daemon, ref)
                    loads.append(os.getloadavg()[0])
                    print(
                        "run:",
                        ", ".join(f"{k} {v:.2f} s" for k, v in times.items()),
                        f"(load {loads[-1]:.1f})",
                    )
                    best = {k: min(v, best.get(k, v)) for k, v in times.items()}
        finally:
            if daemon is not None:
                daemon.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    mb = size / 1e6
    ours = best["atoll"]
    print(
        f"image: {LAYERS} layers, {mb:.0f} MB compressed; best of {RUNS}; "
        f"load average {min(loads):.1f}-{max(loads):.1f}"
    )
    print(f"atoll pull (download, verify, unpack): {ours:.2f} s, {mb / ours:.0f} MB/s")
    print(
        f"skopeo copy docker:// oci: (download, verify): {best['skopeo']:.2f} s, "
        f"{mb / best['skopeo']:.0f} MB/s"
    )
    if "docker" in best:
        print(
            f"docker pull (download, verify, unpack): {best['docker']:.2f} s, {mb / best['docker']:.0f} MB/s"
        )
    for other in ("skopeo", "docker"):
        if other in best:
            print(f"ratio atoll/{other}: {ours / best[other]:.2f}x (lower is faster)")
    figures = {"bench": "pull", "layers": LAYERS, "mb": round(mb), "load": [round(x, 1) for x in loads]}
    figures.update({f"{k}_s": round(v, 3) for k, v in best.items()})
    figures["ratio"] = round(ours / best["skopeo"], 3)  # atoll/skopeo, as before
    if "docker" in best:
        figures["ratio_docker"] = round(ours / best["docker"], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
