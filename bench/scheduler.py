"""Scheduler benchmark: replay the Alibaba openb trace through `place_many`, binpack against spread.

Hosts are the 1,523 openb nodes (CPU and memory; GPUs are left out, as the trace README allows, so GPU
pods are placed by their CPU and memory alone). Requests are the pods of `openb_pod_list_default.csv` in
creation order, all present at once: there is no deletion replay, so this measures packing at the peak.
Overcommit is 1.0 for every resource, because the trace's figures are Kubernetes requests that were never
over-committed. `--pods N` subsamples the first N pods (by creation time) to keep a run short.

Reported per strategy: hosts used, mean CPU and memory utilisation of the hosts used, placements per second
(wall time of `place_many` over the whole batch) and failures. The last line printed is one JSON object.

Run: `.venv/bin/python bench/scheduler.py [--pods N] [--traces DIR]`.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

from atoll.scheduler import HostCapacity, Overcommit, Placement, Request, place_many
from atoll.scheduler.model import Strategy

MIB = 1 << 20
TRACES = Path("/work/shared/data/traces")
NO_OVERCOMMIT = Overcommit(cpu=1.0, memory=1.0, disk=1.0, pids=1.0)


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


def run(strategy: Strategy, hosts: list[HostCapacity], pods: list[dict[str, str]]) -> dict[str, Any]:
    requests = [
        Request(
            cpu_millis=int(p["cpu_milli"]),
            memory_bytes=int(p["memory_mib"]) * MIB,
            name=p["name"],
            strategy=strategy,
        )
        for p in pods
    ]
    start = time.perf_counter()
    batch = place_many(requests, hosts, {}, NO_OVERCOMMIT)
    elapsed = time.perf_counter() - start
    used = {r.host_id for r in batch.results if isinstance(r, Placement)}
    by_id = {h.id: h for h in hosts}
    cpu = [batch.usage[h].cpu_millis / by_id[h].cpu_millis for h in used if by_id[h].cpu_millis]
    mem = [batch.usage[h].memory_bytes / by_id[h].memory_bytes for h in used if by_id[h].memory_bytes]
    return {
        "strategy": strategy,
        "requests": len(requests),
        "placed": batch.placed,
        "failures": len(requests) - batch.placed,
        "hosts_used": len(used),
        "mean_cpu_util": round(sum(cpu) / len(cpu), 4) if cpu else 0.0,
        "mean_mem_util": round(sum(mem) / len(mem), 4) if mem else 0.0,
        "placements_per_s": round(len(requests) / elapsed, 1),
        "seconds": round(elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traces", type=Path, default=TRACES)
    parser.add_argument("--pods", type=int, default=None, help="replay only the first N pods (default: all)")
    args = parser.parse_args()
    hosts = load_hosts(args.traces)
    pods = load_pods(args.traces, args.pods)
    print(f"openb trace: {len(hosts)} hosts, {len(pods)} pods, overcommit 1.0, GPUs ignored, no deletions")
    results = {}
    for strategy in ("binpack", "spread"):
        r = run(strategy, hosts, pods)
        results[strategy] = r
        print(
            f"{strategy:8} hosts used {r['hosts_used']:5}  cpu util {r['mean_cpu_util']:.1%}  "
            f"mem util {r['mean_mem_util']:.1%}  {r['placements_per_s']:8.0f} placements/s  "
            f"failures {r['failures']}"
        )
    summary = {
        "hosts": len(hosts),
        "pods": len(pods),
        **{f"{s}_{k}": v for s, r in results.items() for k, v in r.items() if k != "strategy"},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
