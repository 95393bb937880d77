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
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

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


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time so far of the running processes ``pids`` (threads included)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def atoll_variants() -> dict[str, dict[str, Any]]:
    """Atoll's pull as configured by default, plus any variants named in ``BENCH_VARIANTS``
    (``name:field=value;...,...``, fields of RegistryOptions), each timed in every round."""
    variants: dict[str, dict[str, Any]] = {"atoll": {}}
    for item in filter(None, os.environ.get("BENCH_VARIANTS", "").split(",")):
        name, _, settings = item.partition(":")
        pairs = (kv.split("=", 1) for kv in settings.split(";") if kv)
        variants[name] = {k: int(v) for k, v in pairs}
    return variants


async def atoll_pull(base: Path, host: str, ref: str, settings: dict[str, Any]) -> tuple[float, float]:
    """(wall, CPU) seconds of one pull: CPU of this process and of any helper processes it uses."""
    store = ImageStore(base / "store")
    options = dataclasses.replace(RegistryOptions(insecure=frozenset({host})), **settings)
    regs = Registries(store, options)
    try:
        await regs.ready()  # an agent keeps its pull workers: only its first pull starts them
        os.sync()
        pids = [os.getpid(), *regs.pull_worker_pids()]  # not the registry's or dockerd's, also children
        cpu = cpu_seconds(pids)
        start = time.perf_counter()
        async for event in regs.pull(ref, {}):
            if isinstance(event, Pulled):
                elapsed = time.perf_counter() - start
        return elapsed, cpu_seconds(pids) - cpu
    finally:
        await regs.close()
        shutil.rmtree(base / "store")


def skopeo_copy(base: Path, ref: str) -> tuple[float, float]:
    dest = base / "oci"
    os.sync()
    cpu = children_cpu()
    start = time.perf_counter()
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"oci:{dest}:x"],
        check=True,
    )
    elapsed = time.perf_counter() - start
    cpu = children_cpu() - cpu
    shutil.rmtree(dest)
    return elapsed, cpu


def docker_pull(daemon: StockDockerd, ref: str) -> tuple[float, float]:
    """(wall, CPU): the CPU of dockerd, containerd and the docker client."""
    os.sync()
    pids = daemon.processes()
    cpu = cpu_seconds(pids) + children_cpu()
    start = time.perf_counter()
    done = daemon.docker("pull", "-q", ref, timeout=300)
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(pids) + children_cpu() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"docker pull failed: {done.stderr}")
    daemon.docker("rmi", ref, timeout=120)
    return elapsed, cpu


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
    cpus: dict[str, list[float]] = {}
    loads = []
    variants = atoll_variants()
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
                        name: asyncio.run(atoll_pull(base, reg.host, ref, options))
                        for name, options in variants.items()
                    }
                    times["skopeo"] = skopeo_copy(base, ref)
                    if daemon is not None:
                        times["docker"] = docker_pull(daemon, ref)
                    loads.append(os.getloadavg()[0])
                    print(
                        "run:",
                        ", ".join(f"{k} {w:.2f} s (cpu {c:.2f} s)" for k, (w, c) in times.items()),
                        f"(load {loads[-1]:.1f})",
                        flush=True,
                    )
                    for k, (w, c) in times.items():
                        best[k] = min(w, best.get(k, w))
                        cpus.setdefault(k, []).append(c)
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
    for name in variants:
        print(f"{name} pull (download, verify, unpack): {best[name]:.2f} s, {mb / best[name]:.0f} MB/s")
    print(
        f"skopeo copy docker:// oci: (download, verify): {best['skopeo']:.2f} s, "
        f"{mb / best['skopeo']:.0f} MB/s"
    )
    if "docker" in best:
        print(
            f"docker pull (download, verify, unpack): {best['docker']:.2f} s, {mb / best['docker']:.0f} MB/s"
        )
    for name, spent in cpus.items():
        print(f"CPU time {name}: " + ", ".join(f"{c:.2f}" for c in spent) + " s")
    for other in ("skopeo", "docker"):
        if other in best:
            print(f"ratio atoll/{other}: {ours / best[other]:.2f}x (lower is faster)")
    figures = {"bench": "pull", "layers": LAYERS, "mb": round(mb), "load": [round(x, 1) for x in loads]}
    figures.update({f"{k}_s": round(v, 3) for k, v in best.items()})
    figures.update({f"{k}_cpu_s": round(min(v), 3) for k, v in cpus.items()})
    figures["ratio"] = round(ours / best["skopeo"], 3)  # atoll/skopeo, as before
    if "docker" in best:
        figures["ratio_docker"] = round(ours / best["docker"], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
