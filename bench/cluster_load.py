"""Control-plane load test: a real controller, a thousand simulated hosts, tens of thousands of instances.

1. `atoll serve` on a temp dir (SQLite, its own ports), as its own process.
2. One join token per host from the native API; `--fleet-procs` processes of `python -m
   atoll.agent.simulated` (4 by default, one listener each, a share of the tokens each) join every host
   over the real protocol and heartbeat each every `--heartbeat` seconds; by default the interval grows
   with the fleet so the controller takes about `--beats-per-second` (50) beats a second, at least 5 s
   apart per host (Nomad's rule): 20 s at 1,000 hosts.
3. Waits until every host is `ready` and holds the starter image (built by the controller on each).
4. Creates `--instances` instances through the native API, `--concurrency` at a time, of mixed sizes
   (0.25-2 CPUs, 256 MiB-4 GiB), so the scheduler places them across the fleet; every 1,000 creates
   it also times a `show` of a random instance and a `list` of one page of the running ones
   (`ps` without `--all`: none run, so this times the query, not the JSON of 50,000 rows). A full
   `list --all` is timed a few times at the end.
5. Removes `--remove` of them (random ones), `--concurrency` at a time.
Reported: p50/p95/p99 latency of create, show, list, list-all, remove; heartbeat round trips as the hosts
measured them (with how many beats failed); the controller's resident memory; totals and rates. The last
line is one JSON object.

Run: `.venv/bin/python bench/cluster_load.py [--hosts 1000] [--instances 50000] [--remove 5000]`;
`--profile FILE` runs the controller under cProfile (`ATOLL_PROFILE`, see `atoll/profiling.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from atoll.agent.simulated.fleet import percentiles

ATOLL = str(Path(sys.executable).parent / "atoll")
SIZES = ((0.25, 256), (0.5, 512), (1.0, 1024), (1.0, 2048), (2.0, 4096))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used: unlike latency, not inflated by others' load."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


class Run:
    def __init__(self, base: Path, args: argparse.Namespace) -> None:
        self.base = base
        self.args = args
        self.api_port, self.cluster_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.env = {
            **os.environ,
            "ATOLL_DATA_DIR": str(base / "controller"),
            "ATOLL_API_PORT": str(self.api_port),
            "ATOLL_CLUSTER_HOST": "127.0.0.1",
            "ATOLL_CLUSTER_PORT": str(self.cluster_port),
            "ATOLL_HEARTBEAT_TIMEOUT": str(args.heartbeat_timeout),
            "TMPDIR": str(base),
        }
        if args.profile:
            self.env["ATOLL_PROFILE"] = str(args.profile.resolve())
        self.controller: subprocess.Popen[bytes] | None = None
        self.fleets: list[subprocess.Popen[bytes]] = []
        # Nomad's rule: beats spread so the controller takes about `--beats-per-second` of them.
        self.heartbeat = args.heartbeat or max(5.0, args.hosts / args.beats_per_second)
        self.latency: dict[str, list[float]] = {}
        self.cpu: dict[str, float] = {}
        """CPU seconds used by the controller / the fleet processes, per phase (see `mark`)."""
        self.errors: dict[str, int] = {}

    @property
    def controller_log(self) -> Path:
        return self.base / "controller.log"

    def spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(args, env=self.env, stdout=out, stderr=out, start_new_session=True)

    def stop(self, proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def mark(self, phase: str) -> None:
        """Record the CPU seconds used so far, under `phase`."""
        if self.controller is not None:
            self.cpu[f"controller_{phase}"] = cpu_s(self.controller.pid)
        self.cpu[f"fleet_{phase}"] = sum(cpu_s(p.pid) for p in self.fleets)

    async def timed(self, kind: str, client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> Any:
        start = time.perf_counter()
        try:
            r = await client.request(method, path, **kw)
        except httpx.HTTPError as e:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            print(f"{kind}: {type(e).__name__} {e}", flush=True)
            return None
        self.latency.setdefault(kind, []).append(time.perf_counter() - start)
        if r.status_code >= 400:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            if self.errors[kind] <= 5:
                print(f"{kind}: {r.status_code} {r.text[:300]}", flush=True)
            return None
        return r.json() if r.content else {}

    async def wait_for(self, what: str, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, OSError):
                if await check():
                    return
            await asyncio.sleep(1.0)
        raise RuntimeError(f"{what}: not done in {timeout} s; see {self.controller_log}")

    async def setup(self, client: httpx.AsyncClient) -> dict[str, Any]:
        start = time.perf_counter()
        self.controller = self.spawn([ATOLL, "serve"], self.controller_log)

        async def api_up() -> bool:
            return (await client.get("/v1/cluster/hosts")).status_code == 200

        await self.wait_for("controller", api_up, 60)
        tokens = []
        for _ in range(self.args.hosts):
            r = await client.post("/v1/cluster/tokens", json={"ttl": 3600})
            r.raise_for_status()
            tokens.append(r.json()["token"])
        joined_at = time.perf_counter()
        # The fleet in `--fleet-procs` processes (one listener each), so no one process's event loop has
        # to carry every host's heartbeats and RPCs.
        shards = max(1, min(self.args.fleet_procs, self.args.hosts))
        for n in range(shards):
            (self.base / f"tokens-{n}").write_text("\n".join(tokens[n::shards]) + "\n")
            self.fleets.append(
                self.spawn(
                    [
                        sys.executable,
                        "-m",
                        "atoll.agent.simulated",
                        "--tokens",
                        str(self.base / f"tokens-{n}"),
                        "--base",
                        str(self.base / "hosts"),
                        "--prefix",
                        f"sim{n}",
                        "--heartbeat-interval",
                        str(self.heartbeat),
                        "--stats",
                        str(self.base / f"fleet-{n}.json"),
                        "--join-concurrency",
                        str(self.args.join_concurrency),
                    ],
                    self.base / f"fleet-{n}.log",
                )
            )

        async def fleet_ready() -> bool:
            for n, fleet in enumerate(self.fleets):
                log = (self.base / f"fleet-{n}.log").read_text()
                if fleet.poll() is not None:
                    raise RuntimeError(f"fleet {n} exited: {log[-3000:]}")
                if "ready " not in log:
                    return False
            return True

        await self.wait_for("joins", fleet_ready, 3600)
        join_s = time.perf_counter() - joined_at

        seen = {"n": -1, "since": time.monotonic()}

        async def starters() -> bool:
            # Done when every host holds it, or when no more hosts got it for a minute (a host the
            # controller failed to reach keeps it out of placement: images go to hosts holding them).
            n = self.controller_log.read_text().count("holds the starter image")
            if n != seen["n"]:
                seen["n"], seen["since"] = n, time.monotonic()
                print(f"  starter image on {n} of {self.args.hosts} hosts", flush=True)
            return n >= self.args.hosts or time.monotonic() - seen["since"] > 60

        await self.wait_for("starter images", starters, 3600)
        hosts = (await client.get("/v1/cluster/hosts")).json()
        ready = sum(1 for h in hosts if h["state"] == "ready")
        return {
            "setup_s": round(time.perf_counter() - start, 1),
            "join_all_s": round(join_s, 1),
            "hosts_ready": ready,
            "hosts_with_starter_image": seen["n"],
        }

    async def create_all(self, client: httpx.AsyncClient) -> list[str]:
        rnd = random.Random(6)
        ids: list[str] = []
        slots = asyncio.Semaphore(self.args.concurrency)

        deadline = time.monotonic() + self.args.create_seconds

        async def create(i: int) -> None:
            cpus, mib = rnd.choice(SIZES)
            if time.monotonic() > deadline:
                return  # out of time: report what was created
            body = {
                "image": "busybox",
                "name": f"load-{i}",
                "command": ["sleep", "3600"],
                "resources": {"cpus": cpus, "memory": mib << 20},
            }
            async with slots:
                if time.monotonic() > deadline:
                    return
                made = await self.timed("create", client, "POST", "/v1/projects/default/instances", json=body)
                if made:
                    ids.append(made["id"])
                if i % 1000 == 999 and ids:
                    await self.timed(
                        "show", client, "GET", f"/v1/projects/default/instances/{rnd.choice(ids)}"
                    )
                    await self.timed("list", client, "GET", "/v1/projects/default/instances")
                    rate = len(ids) / (time.perf_counter() - started)
                    rss = rss_mib(self.controller.pid) if self.controller else 0.0
                    cpu = cpu_s(self.controller.pid) if self.controller else 0.0
                    print(
                        f"  {len(ids)} created, {rate:.0f}/s, controller {rss} MiB, {cpu:.0f} CPU s,"
                        f" load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )

        started = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(self.args.instances)))
        self.create_s = time.perf_counter() - started
        self.mark("create")
        for _ in range(3):
            await self.timed(
                "list_all", client, "GET", "/v1/projects/default/instances", params={"all": "true"}
            )
            await self.timed("host_ls", client, "GET", "/v1/cluster/hosts")
        self.mark("lists")
        return ids

    async def remove_some(self, client: httpx.AsyncClient, ids: list[str]) -> None:
        victims = random.Random(7).sample(ids, min(self.args.remove, len(ids)))
        slots = asyncio.Semaphore(self.args.concurrency)

        async def remove(instance_id: str) -> None:
            async with slots:
                await self.timed("remove", client, "DELETE", f"/v1/projects/default/instances/{instance_id}")

        started = time.perf_counter()
        await asyncio.gather(*(remove(i) for i in victims))
        self.remove_s = time.perf_counter() - started


def merged_stats(paths: list[Path]) -> dict[str, Any]:
    """One fleet summary from each process's: percentiles over every process's raw samples."""
    parts = [json.loads(p.read_text()) for p in paths]
    return {
        "heartbeat": percentiles([x for p in parts for x in p["heartbeat_samples"]]),
        "heartbeat_errors": sum(p["heartbeat_errors"] for p in parts),
        "join": percentiles([x for p in parts for x in p["join_samples"]]),
        "instances": sum(p["instances"] for p in parts),
    }


def per_call(cpu: dict[str, float], who: str, start: str, end: str, n: int) -> float:
    """CPU milliseconds of `who` between two marks, per call (includes its heartbeat work meanwhile)."""
    return round((cpu.get(f"{who}_{end}", 0) - cpu.get(f"{who}_{start}", 0)) * 1000 / max(1, n), 2)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="atoll-load-") as tmp:
        run = Run(Path(tmp), args)
        try:
            limits = httpx.Limits(max_connections=args.concurrency + 4)
            timeout = httpx.Timeout(600.0)
            async with httpx.AsyncClient(base_url=run.url, limits=limits, timeout=timeout) as client:
                summary = await run.setup(client)
                print(f"setup: {summary}", flush=True)
                run.mark("setup")
                ids = await run.create_all(client)
                controller_mib = rss_mib(run.controller.pid) if run.controller else 0.0
                await run.remove_some(client, ids)
                run.mark("remove")
            for proc in run.fleets:
                run.stop(proc)
            fleet = merged_stats([run.base / f"fleet-{n}.json" for n in range(len(run.fleets))])
            # The controller's last minute-by-minute counters (services/liveness.py).
            beats = [ln for ln in run.controller_log.read_text().splitlines() if "heartbeats: " in ln]
            counters = beats[-1].split("heartbeats: ", 1)[1] if beats else ""
        finally:
            for proc in run.fleets:
                run.stop(proc)
            run.stop(run.controller)
            if args.keep_log:
                with contextlib.suppress(OSError):
                    args.keep_log.write_text(run.controller_log.read_text()[-200_000:])
        return {
            "hosts": args.hosts,
            "instances": len(ids),
            **summary,
            "create_per_s": round(len(ids) / run.create_s, 1),
            "remove_per_s": round(min(args.remove, len(ids)) / run.remove_s, 1),
            "controller_rss_mib": controller_mib,
            "cpu_s": {k: round(v, 1) for k, v in run.cpu.items()},
            # CPU per call, from the processes' own counters: comparable across machine loads.
            "controller_cpu_ms_per_create": per_call(run.cpu, "controller", "setup", "create", len(ids)),
            "controller_cpu_ms_per_remove": per_call(
                run.cpu, "controller", "lists", "remove", min(args.remove, len(ids))
            ),
            "duration_s": round(time.perf_counter() - started, 1),
            "controller_counters": counters,
            **{k: percentiles(v) for k, v in run.latency.items()},
            "errors": run.errors,
            "heartbeat": fleet["heartbeat"],
            "heartbeat_errors": fleet["heartbeat_errors"],
            "host_join": fleet["join"],
            "fleet_instances": fleet["instances"],
            "heartbeat_interval_s": run.heartbeat,
            "fleet_procs": len(run.fleets),
            "concurrency": args.concurrency,
            "loadavg": float(Path("/proc/loadavg").read_text().split()[0]),
        }


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=50_000)
    parser.add_argument("--remove", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=0.0,
        help="seconds between a host's beats (default: from --beats-per-second)",
    )
    parser.add_argument(
        "--beats-per-second", type=float, default=50.0, help="the fleet's total heartbeat rate"
    )
    parser.add_argument("--fleet-procs", type=int, default=4, help="simulated-host processes")
    parser.add_argument("--heartbeat-timeout", type=float, default=60.0)
    parser.add_argument(
        "--create-seconds", type=float, default=float("inf"), help="stop creating after this long"
    )
    parser.add_argument("--join-concurrency", type=int, default=2, help="joins at a time, per fleet process")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the controller into this file")
    parser.add_argument("--keep-log", type=Path, default=None, help="copy the controller's log here")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    print(json.dumps(result))


if __name__ == "__main__":
    cli()
