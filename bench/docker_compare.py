"""Atoll's Docker API against a stock dockerd on this machine, through the same `docker` CLI, in one run.

(a) median wall time of `docker run --rm busybox true` (N runs after a warm-up);
(b) the rate of 50 detached starts, `docker run -d busybox sleep 1d`, one after another;
(c) host memory per idle container beyond the containers' own processes: (MemAvailable drop over the
    50 starts - the containers' own PSS) / 50, as bench/lifecycle.py measures it. What dockerd spends
    outside the container's cgroup (its shim, containerd and dockerd state) counts; so does Atoll's.
    On a machine shared with other work MemAvailable moves by more than 50 containers cost, so a
    second figure counts only what can be attributed: the growth of the daemon side's PSS (dockerd,
    containerd and the shims; `atoll up`) plus the kernel memory charged to the containers' cgroups.
Also the floor under (a) and (b): the same CLI commands against bench/cli_floor.py, a responder that
answers each request at once (``cli_floor_ms``, ``cli_floor_detached_ms``): what no daemon can beat;
and the runtime's own floor, bench/runtime_floor.py (``runtime_floor_ms``: create + start + wait +
delete of Atoll's bundle on a prepared root filesystem, the fastest way the runtime Atoll picks here
allows; ``runtime_floor_detached_ms``: create + start), with the budget they leave under targets (a), (b).

Atoll is a fresh `atoll up` on temp paths (tests/e2e/cloud.py: own ports, socket, net prefix, nft table,
cgroup parent); dockerd is the private one of tests/docker/stock.py (own roots and socket, no bridge, no
iptables) with the same busybox content. They run one after the other, each alone. Both are stopped and
everything is removed at the end. The CLI is /usr/local/bin/docker for both, so its own start-up
(tens of ms) is in both figures.

Run as root: `.venv/bin/python -m bench.docker_compare [--runs 20] [--count 50]`.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
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

from bench.cli_floor import measure_floor
from bench.lifecycle import mem_available, process_memory, settle
from bench.runtime_floor import measure_runtime_floor
from tests.docker.stock import DOCKER_CLI, StockDockerd, missing_binaries
from tests.e2e.cloud import Cloud

Docker = Callable[..., subprocess.CompletedProcess[str]]


def cli_for(host: str) -> Docker:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=host, DOCKER_CONFIG="/nonexistent-atoll-docker-config")

    def docker(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([DOCKER_CLI, *args], env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {proc.returncode} {proc.stderr}")
        return proc

    return docker


def cgroup_pids(parent: str) -> list[int]:
    """Every process in the containers' cgroups (the pids hierarchy holds each container's tree)."""
    pids: set[int] = set()
    for procs in Path("/sys/fs/cgroup/pids", parent).glob("**/cgroup.procs"):
        pids.update(int(p) for p in procs.read_text().split())
    return sorted(pids)


def kmem(parent: str) -> int:
    """Kernel memory charged to the containers' cgroups (page tables, stacks, slab): theirs, but overhead."""
    total = 0
    for usage in Path("/sys/fs/cgroup/memory", parent).glob("*/memory.kmem.usage_in_bytes"):
        total += int(usage.read_text())
    return total


def daemon_pss(daemon: Callable[[], list[int]], parent: str) -> tuple[int, int]:
    """PSS of the daemon side's processes outside the containers' cgroups (dockerd, containerd and the
    shims; `atoll up`), and how many there are."""
    inside = set(cgroup_pids(parent))
    pids = [p for p in daemon() if p not in inside]
    return sum(process_memory(p)[0] for p in pids), len(pids)


def cgroup_dirs(parent: str) -> int:
    """The containers' cgroup directories, over every mounted hierarchy (each costs kernel memory
    charged to whoever made it, outside the containers' own cgroups)."""
    return sum(
        sum(1 for d in (root / parent).iterdir() if d.is_dir())
        for root in Path("/sys/fs/cgroup").iterdir()
        if (root / parent).is_dir()
    )


def attributed(daemon: Callable[[], list[int]], parent: str) -> dict[str, int]:
    """What the daemon side holds (PSS of its processes outside the containers' cgroups: dockerd,
    containerd and the shims; `atoll up`) plus the containers' kernel memory, and those parts."""
    pss, processes = daemon_pss(daemon, parent)
    kernel = kmem(parent)
    return {"total": pss + kernel, "daemon_pss": pss, "kmem": kernel, "daemon_processes": processes}


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def session_pids(sid: int) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getsid(int(pid)) == sid:
                pids.append(int(pid))
        except OSError:
            continue
    return pids


def measure(
    docker: Docker, cgroup_parent: str, daemon: Callable[[], list[int]], runs: int, count: int
) -> dict[str, Any]:
    for _ in range(3):  # warm the CLI, the daemon and the page cache
        docker("run", "--rm", "busybox", "true")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        docker("run", "--rm", "busybox", "true")
        times.append(time.perf_counter() - t0)

    settle()
    before = mem_available()
    held0 = attributed(daemon, cgroup_parent)
    t0 = time.perf_counter()
    for _ in range(count):
        docker("run", "-d", "busybox", "sleep", "1d")
    rate = count / (time.perf_counter() - t0)
    settle()
    drop = before - mem_available()
    held1 = attributed(daemon, cgroup_parent)
    held = held1["total"] - held0["total"]
    cgroups = cgroup_dirs(cgroup_parent)
    own = [process_memory(p)[0] for p in cgroup_pids(cgroup_parent)]
    ids = docker("ps", "-aq").stdout.split()
    docker("rm", "-f", *ids)
    return {
        "run_rm_true_ms": round(statistics.median(times) * 1000, 1),
        "run_rm_true_min_ms": round(min(times) * 1000, 1),
        "detached_starts_per_s": round(rate, 2),
        "mem_available_drop_per_container_mb": round(drop / count / 2**20, 3),
        "container_own_pss_mb": round(sum(own) / count / 2**20, 3),
        "mem_per_container_mb": round((drop - sum(own)) / count / 2**20, 3),
        "container_processes": len(own),
        "attributed_per_container_mb": round(held / count / 2**20, 3),
        # The attributed figure's two parts, and what they are made of.
        "daemon_pss_growth_per_container_mb": round(
            (held1["daemon_pss"] - held0["daemon_pss"]) / count / 2**20, 3
        ),
        "container_kmem_per_container_mb": round((held1["kmem"] - held0["kmem"]) / count / 2**20, 3),
        "daemon_processes_before_after": [held0["daemon_processes"], held1["daemon_processes"]],
        "cgroup_dirs_per_container": round(cgroups / count, 2),
    }


def print_budget(figures: dict[str, Any], count: int) -> None:
    """What targets (a) and (b) leave a daemon, against what the CLI and the runtime alone take."""
    d = figures["dockerd"]
    target_a = 0.25 * d["run_rm_true_ms"]
    floor_a = figures["cli_floor_ms"] + figures["runtime_floor_ms"]
    figures["budget_a"] = {"target_ms": round(target_a, 1), "cli_plus_runtime_floor_ms": round(floor_a, 1)}
    print(
        f"budget (a): 0.25 x {d['run_rm_true_ms']} ms = {target_a:.1f} ms; CLI floor"
        f" {figures['cli_floor_ms']} ms + runtime floor {figures['runtime_floor_ms']} ms = {floor_a:.1f} ms"
        f" ({floor_a / target_a:.2f}x the target, before any daemon work; the runtime's CPU alone"
        f" {figures['runtime_floor_cpu_ms']} ms)"
    )
    target_b = 1000 / (5 * d["detached_starts_per_s"])
    floor_b = figures["cli_floor_detached_ms"] + figures["runtime_floor_detached_ms"]
    figures["budget_b"] = {
        "target_ms_per_start": round(target_b, 1),
        "cli_plus_runtime_floor_ms": round(floor_b, 1),
    }
    print(
        f"budget (b): 5 x {d['detached_starts_per_s']}/s = one start per {target_b:.1f} ms; CLI floor"
        f" {figures['cli_floor_detached_ms']} ms + runtime floor (create + start)"
        f" {figures['runtime_floor_detached_ms']} ms = {floor_b:.1f} ms"
        f" ({floor_b / target_b:.2f}x the target;"
        f" at best {1000 / floor_b / d['detached_starts_per_s']:.2f}x dockerd's rate; the runtime's CPU"
        f" alone {figures['runtime_floor_detached_cpu_ms']} ms)"
    )
    rf = figures["runtime_floor"]
    print(
        f"    runtime ({rf['runtime']}, cgroup v{rf['cgroup_version']}): agent path {rf['agent_run_rm']},"
        f" one foreground run {rf['oneshot_run_rm']}, detached {rf['agent_run_detached']};"
        f" minimal bundles: runc {rf.get('runc_minimal_run_rm')}, crun {rf.get('crun_minimal_run_rm')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument(
        "--atoll-only", action="store_true", help="measure Atoll alone (no dockerd, no ratios)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    if missing := missing_binaries():
        sys.exit(f"not installed: {', '.join(missing)}")

    base = Path(tempfile.mkdtemp(prefix="atoll-bench-docker-"))
    figures: dict[str, Any] = {"loadavg_start": loadavg()}
    # The production reconcile interval (the test clouds' 1 s would spend CPU the comparison should not).
    cloud = Cloud(base=base / "atoll", extra_env={"ATOLL_RECONCILE_INTERVAL": "5"})
    cloud.base.mkdir()
    try:
        cloud.start()
        figures["atoll"] = measure(
            cli_for(cloud.docker_host),
            cloud.cgroup_parent,
            lambda: session_pids(cloud.proc.pid if cloud.proc else -1),
            args.runs,
            args.count,
        )
    finally:
        cloud.teardown()
    print(f"atoll:   {figures['atoll']}", flush=True)
    if args.atoll_only:
        shutil.rmtree(base, ignore_errors=True)
        figures["loadavg_end"] = loadavg()
        print(json.dumps(figures))
        return

    daemon = StockDockerd(base=base / "dockerd", cgroup_parent=f"atoll-bench-dockerd-{uuid.uuid4().hex[:6]}")
    try:
        daemon.start()
        daemon.load_busybox()
        version = subprocess.run(
            [DOCKER_CLI, "version", "--format", "{{.Server.Version}}"],
            env=daemon.cli_env(),
            capture_output=True,
            text=True,
        ).stdout.strip()
        figures["dockerd"] = measure(
            cli_for(daemon.host), daemon.cgroup_parent, daemon.processes, args.runs, args.count
        )
        figures["dockerd_version"] = version
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"dockerd: {figures['dockerd']}", flush=True)
    figures.update(measure_floor(args.runs))
    runtime_floor = measure_runtime_floor(args.runs)
    figures["runtime_floor"] = runtime_floor
    figures["runtime_floor_ms"] = runtime_floor["runtime_floor_ms"]
    figures["runtime_floor_detached_ms"] = runtime_floor["runtime_floor_detached_ms"]
    figures["runtime_floor_cpu_ms"] = runtime_floor["runtime_floor_cpu_ms"]
    figures["runtime_floor_detached_cpu_ms"] = runtime_floor["runtime_floor_detached_cpu_ms"]

    a, d = figures["atoll"], figures["dockerd"]
    figures["time_ratio"] = round(a["run_rm_true_ms"] / d["run_rm_true_ms"], 3)
    figures["start_rate_ratio"] = round(a["detached_starts_per_s"] / d["detached_starts_per_s"], 2)
    figures["memory_ratio"] = round(a["mem_per_container_mb"] / d["mem_per_container_mb"], 3)
    figures["attributed_memory_ratio"] = round(
        a["attributed_per_container_mb"] / d["attributed_per_container_mb"], 3
    )
    print(
        f"(a) docker run --rm busybox true: atoll {a['run_rm_true_ms']} ms, dockerd {d['run_rm_true_ms']} ms,"
        f" ratio {figures['time_ratio']}x (target <= 0.25x); the CLI alone against an instant responder"
        f" {figures['cli_floor_ms']} ms ({figures['cli_floor_ms'] / d['run_rm_true_ms']:.2f}x dockerd)"
    )
    print(
        f"(b) {args.count} detached starts: atoll {a['detached_starts_per_s']}/s, dockerd "
        f"{d['detached_starts_per_s']}/s, ratio {figures['start_rate_ratio']}x (target >= 5x); the CLI alone:"
        f" {1000 / figures['cli_floor_detached_ms']:.1f}/s"
        f" ({1000 / figures['cli_floor_detached_ms'] / d['detached_starts_per_s']:.1f}x dockerd)"
    )
    print(
        f"(c) memory per idle container beyond its own PSS: atoll {a['mem_per_container_mb']} MB, dockerd "
        f"{d['mem_per_container_mb']} MB, ratio {figures['memory_ratio']}x (target <= 0.15x); attributed "
        f"(daemon-side PSS growth + containers' kernel memory): atoll {a['attributed_per_container_mb']} MB, "
        f"dockerd {d['attributed_per_container_mb']} MB, ratio {figures['attributed_memory_ratio']}x"
    )
    for side, f in (("atoll", a), ("dockerd", d)):
        print(
            f"    {side}: daemon-side PSS growth {f['daemon_pss_growth_per_container_mb']} MB + containers' "
            f"kernel memory {f['container_kmem_per_container_mb']} MB per container; daemon processes "
            f"{f['daemon_processes_before_after'][0]} -> {f['daemon_processes_before_after'][1]}"
        )
    print_budget(figures, args.count)
    figures["loadavg_end"] = loadavg()
    print(f"load average {figures['loadavg_start']} -> {figures['loadavg_end']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
