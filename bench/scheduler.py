"""Scheduler benchmark: placements per second at 10,000 hosts, and the openb trace replay.

1. Fleet stream (the issue's target: >= 5,000 placements/s at 10,000 hosts, 100,000 requests). 10,000
   simulated hosts of four shapes (16/32/64/96 CPUs with 4 GiB per CPU, labelled with one of four zones),
   default overcommit (cpu 4.0, memory 1.0). 100,000 requests from a fixed seed: eight sizes from
   0.25 CPU / 512 MiB to 32 CPUs / 64 GiB, 80% binpack and 20% spread, 10% in anti-affine groups of
   replicas (`container!=grp-N-*`), 5% with a zone constraint. Placed one after another, each seeing the
   claims of the ones before (`place_many_indexed`, the `FleetIndex`). Baseline in the same run: the
   linear `place_many` (every host scanned for every request) on the first `--baseline` requests, and
   the index on the same prefix, so the ratio compares like with like.
2. openb replay: the 1,523 nodes and 8,152 pods of the Alibaba openb trace (CPU and memory, GPUs left
   out, creation order, no deletions, overcommit 1.0), with the linear scan and with the index: hosts
   used and utilisation show what the bounded sample costs in packing.

Every run checks that no host ended up over its limits. The last line printed is one JSON object.

Run: `.venv/bin/python bench/scheduler.py [--hosts N] [--requests N] [--baseline N] [--pods N] [--no-openb]`.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from atoll.scheduler import (
    AffinityRule,
    Batch,
    Constraint,
    HostCapacity,
    HostUsage,
    Overcommit,
    Placement,
    Request,
    place_many,
    place_many_indexed,
)
from atoll.scheduler.model import Strategy

MIB = 1 << 20
GIB = 1 << 30
TRACES = Path("/work/shared/data/traces")
NO_OVERCOMMIT = Overcommit(cpu=1.0, memory=1.0, disk=1.0, pids=1.0)
TARGET = 5000.0

SHAPES = ((16, 0.4), (32, 0.3), (64, 0.2), (96, 0.1))
"""(CPUs, share of the fleet); every shape has 4 GiB of memory per CPU."""
SIZES = ((250, 512), (500, 1024), (1000, 2048), (2000, 4096), (4000, 8192), (8000, 16384), (16000, 32768))
SIZE_WEIGHTS = (10, 15, 20, 22, 16, 11, 6)
ZONES = ("z0", "z1", "z2", "z3")

Placer = Callable[[Sequence[Request], Sequence[HostCapacity], Mapping[str, HostUsage], Overcommit], Batch]


def fleet(n: int, seed: int) -> list[HostCapacity]:
    rnd = random.Random(seed)
    cpus = [c for c, _ in SHAPES]
    weights = [w for _, w in SHAPES]
    hosts = []
    for i in range(n):
        c = rnd.choices(cpus, weights)[0]
        hosts.append(
            HostCapacity(
                id=f"h{i:05}",
                cpu_millis=c * 1000,
                memory_bytes=c * 4 * GIB,
                disk_bytes=2000 * GIB,
                pids=100_000,
                labels={"zone": ZONES[i % len(ZONES)]},
            )
        )
    return hosts


def stream(n: int, seed: int) -> list[Request]:
    rnd = random.Random(seed + 1)
    out = []
    for i in range(n):
        cpu, mem = rnd.choices(SIZES, SIZE_WEIGHTS)[0]
        strategy: Strategy = "spread" if rnd.random() < 0.2 else "binpack"
        name = f"app-{i}"
        affinities: tuple[AffinityRule, ...] = ()
        constraints: tuple[Constraint, ...] = ()
        roll = rnd.random()
        if roll < 0.10:
            group = rnd.randrange(n // 20 or 1)
            name = f"grp-{group}-{i}"
            affinities = (AffinityRule("container", "!=", f"grp-{group}-*"),)
        elif roll < 0.15:
            constraints = (Constraint("zone", "==", rnd.choice(ZONES)),)
        out.append(
            Request(
                cpu_millis=cpu,
                memory_bytes=mem * MIB,
                disk_bytes=10 * GIB,
                pids=100,
                name=name,
                strategy=strategy,
                affinities=affinities,
                constraints=constraints,
            )
        )
    return out


def check_limits(hosts: Sequence[HostCapacity], batch: Batch, oc: Overcommit) -> None:
    for h in hosts:
        u = batch.usage.get(h.id)
        if u is not None and any(have > limit for have, limit in zip(u.vector, oc.limits(h), strict=True)):
            raise AssertionError(f"host {h.id} over-committed: {u.vector} > {oc.limits(h)}")


def timed(
    placer: Placer, requests: Sequence[Request], hosts: Sequence[HostCapacity], oc: Overcommit
) -> tuple[Batch, float]:
    start = time.perf_counter()
    batch = placer(requests, hosts, {}, oc)
    elapsed = time.perf_counter() - start
    check_limits(hosts, batch, oc)
    return batch, elapsed


def packing(hosts: Sequence[HostCapacity], batch: Batch, n: int, elapsed: float) -> dict[str, Any]:
    used = {r.host_id for r in batch.results if isinstance(r, Placement)}
    by_id = {h.id: h for h in hosts}
    cpu = [batch.usage[h].cpu_millis / by_id[h].cpu_millis for h in used if by_id[h].cpu_millis]
    mem = [batch.usage[h].memory_bytes / by_id[h].memory_bytes for h in used if by_id[h].memory_bytes]
    return {
        "requests": n,
        "placed": batch.placed,
        "failures": n - batch.placed,
        "hosts_used": len(used),
        "mean_cpu_util": round(sum(cpu) / len(cpu), 4) if cpu else 0.0,
        "mean_mem_util": round(sum(mem) / len(mem), 4) if mem else 0.0,
        "placements_per_s": round(n / elapsed, 1),
        "seconds": round(elapsed, 2),
    }


def fleet_stream(n_hosts: int, n_requests: int, baseline: int, seed: int) -> dict[str, Any]:
    hosts = fleet(n_hosts, seed)
    requests = stream(n_requests, seed)
    oc = Overcommit()
    print(f"fleet stream: {n_hosts} hosts, {n_requests} requests, default overcommit")
    prefix = requests[:baseline]
    _, linear_s = timed(place_many, prefix, hosts, oc)
    _, indexed_prefix_s = timed(place_many_indexed, prefix, hosts, oc)
    linear_rate, prefix_rate = baseline / linear_s, baseline / indexed_prefix_s
    print(
        f"  first {baseline}: linear scan {linear_rate:8.0f}/s, index {prefix_rate:8.0f}/s "
        f"(x{prefix_rate / linear_rate:.1f})"
    )
    batch, elapsed = timed(place_many_indexed, requests, hosts, oc)
    r = packing(hosts, batch, n_requests, elapsed)
    print(
        f"  all {n_requests}: index {r['placements_per_s']:8.0f}/s in {r['seconds']} s, "
        f"placed {r['placed']}, hosts used {r['hosts_used']}, "
        f"cpu util {r['mean_cpu_util']:.1%}, mem util {r['mean_mem_util']:.1%}; target {TARGET:.0f}/s "
        f"(x{r['placements_per_s'] / TARGET:.2f})"
    )
    return {
        "hosts": n_hosts,
        **r,
        "baseline_requests": baseline,
        "linear_prefix_per_s": round(linear_rate, 1),
        "indexed_prefix_per_s": round(prefix_rate, 1),
        "indexed_vs_linear": round(prefix_rate / linear_rate, 1),
        "vs_target": round(r["placements_per_s"] / TARGET, 2),
    }


def load_hosts(traces: Path) -> list[HostCapacity]:
    with (traces / "openb_node_list_all_node.csv").open() as f:
        return [
            HostCapacity(
                id=row["sn"],
                cpu_millis=int(row["cpu_milli"]),
                memory_bytes=int(row["memory_mib"]) * MIB,
                labels={"gpu": row["gpu"], "model": row["model"]},
            )
            for row in csv.DictReader(f)
        ]


def load_pods(traces: Path, limit: int | None) -> list[dict[str, str]]:
    with (traces / "openb_pod_list_default.csv").open() as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["creation_time"] or 0))
    return rows[:limit] if limit else rows


def openb(traces: Path, limit: int | None) -> dict[str, Any]:
    hosts = load_hosts(traces)
    pods = load_pods(traces, limit)
    print(f"openb trace: {len(hosts)} hosts, {len(pods)} pods, overcommit 1.0, GPUs ignored, no deletions")
    out: dict[str, Any] = {"hosts": len(hosts), "pods": len(pods)}
    strategies: tuple[Strategy, ...] = ("binpack", "spread")
    for strategy in strategies:
        requests = [
            Request(
                cpu_millis=int(p["cpu_milli"]),
                memory_bytes=int(p["memory_mib"]) * MIB,
                name=p["name"],
                strategy=strategy,
            )
            for p in pods
        ]
        for path, placer in (("linear", place_many), ("indexed", place_many_indexed)):
            batch, elapsed = timed(placer, requests, hosts, NO_OVERCOMMIT)
            r = packing(hosts, batch, len(requests), elapsed)
            print(
                f"  {strategy:8} {path:8} hosts used {r['hosts_used']:5}  cpu util {r['mean_cpu_util']:.1%}  "
                f"mem util {r['mean_mem_util']:.1%}  {r['placements_per_s']:8.0f} placements/s  "
                f"failures {r['failures']}"
            )
            out.update({f"{strategy}_{path}_{k}": v for k, v in r.items() if k != "requests"})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=500, help="requests placed by the linear scan")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--traces", type=Path, default=TRACES)
    parser.add_argument("--pods", type=int, default=None, help="replay only the first N openb pods")
    parser.add_argument("--no-openb", action="store_true", help="skip the openb trace replay")
    args = parser.parse_args()
    summary: dict[str, Any] = {
        "fleet": fleet_stream(args.hosts, args.requests, args.baseline, args.seed),
    }
    if not args.no_openb:
        summary["openb"] = openb(args.traces, args.pods)
    with open("/proc/loadavg") as f:
        summary["loadavg"] = float(f.read().split()[0])
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
