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

Every pull is timed until it returns, as the baselines are. Atoll's pull returns before its layers'
``syncfs`` has ended (``atoll/agent/images/durable.py``; skopeo and dockerd do not sync at all), so
each run also reports when its data became durable (``durable`` in the run lines, ``atoll_durable_s``),
and the next contender starts only after that.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from atoll.agent.images import ImageStore
from atoll.agent.registry.options import RegistryOptions
from atoll.agent.registry.service import Registries
from atoll.model.registry import Pulled
from bench.contend import Contention
from tests.docker.stock import DockerdUnavailable, StockDockerd
from tests.images import factory
from tests.registry.server import REGISTRY, running_registry, upload

LAYERS = 8
Times = tuple[float, float, float, float | None]
"""One contender's run: wall, CPU, the registry's CPU meanwhile, and (Atoll) when the data was durable."""
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


async def atoll_pull(
    base: Path, host: str, ref: str, settings: dict[str, Any]
) -> tuple[float, float, float | None]:
    """(wall, CPU, durable) seconds of one pull: until the pull returned, the CPU of this process and
    of any helper processes it uses until then, and until its layers were on disk."""
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
                layers = event.record.layers
        spent = cpu_seconds(pids) - cpu
        await store.wait_durable(layers)
        return elapsed, spent, time.perf_counter() - start
    finally:
        await regs.close()
        shutil.rmtree(base / "store")


def skopeo_copy(base: Path, ref: str) -> tuple[float, float, float | None]:
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
    return elapsed, cpu, None


def docker_pull(daemon: StockDockerd, ref: str) -> tuple[float, float, float | None]:
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
    return elapsed, cpu, None


def start_dockerd(base: Path) -> StockDockerd | None:
    daemon = StockDockerd(base=base / "dockerd", cgroup_parent=f"bench-pull-{uuid.uuid4().hex[:6]}")
    try:
        daemon.start()
    except DockerdUnavailable as exc:
        print(f"(no docker pull baseline: {exc})")
        daemon.stop()
        return None
    return daemon


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.pull", description=__doc__.split("\n")[0])
    parser.add_argument("dir", nargs="?", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument(
        "--contend",
        default="0",
        help="comma-separated numbers of CPU hogs (each a session of its own, see bench/contend.py) "
        "to run the whole comparison under, in turn: e.g. 0,1,2",
    )
    parser.add_argument("--procs", type=int, default=0, help="busy loops per hog (default: one per CPU)")
    parser.add_argument("--io", action="store_true", help="also run a disk writer while hogs run")
    parser.add_argument("--runs", type=int, default=RUNS, help="rounds per contention level")
    parser.add_argument("--no-docker", action="store_true", help="leave out docker pull (quicker rounds)")
    return parser.parse_args()


def _atoll(base: Path, host: str, ref: str, settings: dict[str, Any]) -> tuple[float, float, float | None]:
    return asyncio.run(atoll_pull(base, host, ref, settings))


def one_round(
    base: Path,
    reg_host: str,
    ref: str,
    variants: dict[str, dict[str, Any]],
    daemon: StockDockerd | None,
    turn: int,
    registry: int,
) -> dict[str, Times]:
    """Every contender once; the order rotates from round to round, so none always goes first (after
    the previous one's writeback) or last."""
    steps: list[tuple[str, Callable[[], tuple[float, float, float | None]]]] = [
        (name, functools.partial(_atoll, base, reg_host, ref, options)) for name, options in variants.items()
    ]
    steps.append(("skopeo", lambda: skopeo_copy(base, ref)))
    if daemon is not None:
        steps.append(("docker", lambda: docker_pull(daemon, ref)))
    turn %= len(steps)
    times = {}
    for name, step in steps[turn:] + steps[:turn]:
        served = cpu_seconds([registry])
        wall, cpu, durable = step()
        times[name] = (wall, cpu, cpu_seconds([registry]) - served, durable)
    return {name: times[name] for name, _ in steps}


def main() -> None:
    if not Path(REGISTRY).exists() or not shutil.which("skopeo"):
        sys.exit("bench/pull.py needs docker-registry and skopeo: run scripts/setup-system")
    args = parse_args()
    levels = [int(x) for x in args.contend.split(",") if x.strip()]
    base = Path(tempfile.mkdtemp(prefix="bench-pull-", dir=args.dir))
    variants = atoll_variants()
    results: list[dict[str, Any]] = []
    try:
        image = build_image()
        size = sum(len(factory.gz(t)) for t in image.layers[:1]) * LAYERS
        daemon = None if args.no_docker else start_dockerd(base)
        try:
            with running_registry(base / "registry") as reg:
                upload(reg, "bench/big", "1", image)
                ref = f"{reg.host}/bench/big:1"
                for hogs in levels:
                    contention = Contention(hogs, procs=args.procs, io=args.io, scratch=base)
                    print(f"-- contention: {contention.describe()}", flush=True)
                    rounds: list[dict[str, Times]] = []
                    loads = []
                    with contention:
                        for turn in range(args.runs):
                            assert reg.proc is not None
                            times = one_round(base, reg.host, ref, variants, daemon, turn, reg.proc.pid)
                            loads.append(os.getloadavg()[0])
                            rounds.append(times)
                            print(
                                "run:",
                                ", ".join(
                                    f"{k} {w:.2f} s ({_durable(d)}cpu {c:.2f} s, registry {r:.2f})"
                                    for k, (w, c, r, d) in times.items()
                                ),
                                f"(load {loads[-1]:.1f})",
                                flush=True,
                            )
                    results.append(summarize(hogs, rounds, loads, size, variants))
        finally:
            if daemon is not None:
                daemon.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(results[0] if len(results) == 1 else {"bench": "pull", "levels": results}))


def summarize(
    hogs: int,
    rounds: list[dict[str, Times]],
    loads: list[float],
    size: int,
    variants: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Print one contention level's figures; its JSON object. Best of the rounds as before, plus the
    median, and the median of each round's own ratio (the contenders of one round saw about the same
    load)."""
    mb = size / 1e6
    names = list(rounds[0])
    best = {k: min(r[k][0] for r in rounds) for k in names}
    median = {k: statistics.median(r[k][0] for r in rounds) for k in names}
    cpus = {k: [r[k][1] for r in rounds] for k in names}
    print(
        f"image: {LAYERS} layers, {mb:.0f} MB compressed; {hogs} hog(s); best and median of {len(rounds)}; "
        f"load average {min(loads):.1f}-{max(loads):.1f}"
    )
    for name in names:
        print(f"{name}: best {best[name]:.2f} s ({mb / best[name]:.0f} MB/s), median {median[name]:.2f} s")
    for name, spent in cpus.items():
        print(f"CPU time {name}: " + ", ".join(f"{c:.2f}" for c in spent) + " s")
    for name in names:  # the registry shares the pull's session, so its CPU share, under autogroup
        served = [r[name][2] for r in rounds]
        print(f"registry CPU while {name} pulled: " + ", ".join(f"{c:.2f}" for c in served) + " s")
    figures: dict[str, Any] = {
        "bench": "pull",
        "hogs": hogs,
        "layers": LAYERS,
        "mb": round(mb),
        "load": [round(x, 1) for x in loads],
    }
    figures.update({f"{k}_s": round(v, 3) for k, v in best.items()})
    figures.update({f"{k}_median_s": round(v, 3) for k, v in median.items()})
    figures.update({f"{k}_cpu_s": round(min(v), 3) for k, v in cpus.items()})
    for name in variants:  # when the data was on disk: the pull returned earlier (see the docstring)
        durable = [r[name][3] or 0.0 for r in rounds]
        print(f"{name} durable after: " + ", ".join(f"{d:.2f}" for d in durable) + " s")
        figures[f"{name}_durable_s"] = round(min(durable), 3)
        figures[f"{name}_durable_median_s"] = round(statistics.median(durable), 3)
        figures[f"{name}_durable_runs_s"] = [round(d, 3) for d in durable]
    for name in variants:
        for other in ("skopeo", "docker"):
            if other not in best:
                continue
            paired = statistics.median(r[name][0] / r[other][0] for r in rounds)
            print(
                f"ratio {name}/{other}: best {best[name] / best[other]:.2f}x, "
                f"median of rounds {paired:.2f}x (lower is faster)"
            )
            key = "ratio" if other == "skopeo" else "ratio_docker"  # atoll/skopeo keeps its old key
            prefix = "" if name == "atoll" else f"{name}_"
            figures[prefix + key] = round(best[name] / best[other], 3)
            figures[prefix + key + "_paired"] = round(paired, 3)
    return figures


def _durable(seconds: float | None) -> str:
    return "" if seconds is None else f"durable {seconds:.2f} s, "


if __name__ == "__main__":
    main()
