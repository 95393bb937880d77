"""What a big `list --all` does to everything else the controller serves.

A controller process (uvicorn, the real app, SQLite) holds N instance rows (one made through the API,
the rest copies inserted through the store). From another process, one thread asks for the whole list
again and again while another sends cheap requests (show one instance) back to back, as heartbeats and
other clients would. Two routes are measured in the same run, alternately:

- ``new``: the product's ``GET /v1/projects/default/instances?all=true`` (built off the event loop);
- ``old``: a route added here for the comparison only, the list as it was before (the service's list
  returned to FastAPI on the loop).

and, with ``--docker``, the Docker API's ``GET /containers/json?all=1`` on a Docker listener served by the
same process and loop (a unix socket):

- ``docker_new``: the product's (read 50 rows at a time and written as JSON a row at a time, off the loop);
- ``docker_old``: a route added here, the list as session 5 left it (read and viewed off the loop in
  one piece, its ``json.dumps`` on the loop).

Printed per route: the controller's CPU per list (lists alone), and, from lists with cheap requests
sent meanwhile, the list's wall time and the cheap requests' latency while it was under way
(p50/p99/max). The cheap requests' latency is the figure that
matters: with the list on the loop it is the list's whole duration.

`.venv/bin/python -m bench.list_block [--rows 50000] [--rounds 3] [--docker]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import Response
from sqlalchemy import insert, inspect

from atoll.agent.simulated.fleet import percentiles
from atoll.api.app import create_app
from atoll.api.docker.app import map_error
from atoll.api.docker.containers import Containers
from atoll.api.docker.http import Json, Request
from atoll.api.docker.router import Route, Router
from atoll.api.docker.server import DockerServer
from atoll.api.docker.views import summary
from atoll.api.offload import json_list, off_loop
from atoll.api.routes.instances import INSTANCE_LIST
from atoll.schemas import Instance
from atoll.services import instances
from atoll.services.context import AgentRegistry, Controller
from atoll.services.control import LocalControlPlane
from atoll.services.hosts import register_host
from atoll.store.db import open_database
from atoll.store.models import InstanceRow
from tests.controller.fakes import FakeAgent, image_archive, image_record
from tests.e2e.cloud import free_port

LIST = "/v1/projects/default/instances"


async def _seed(db: Path, rows: int) -> str:
    sessions = open_database(f"sqlite:///{db}")
    ctl = Controller(sessions=sessions, agents=AgentRegistry())
    agent = FakeAgent()
    register_host(ctl, agent, name="bench-host", runtime="fake", cgroup_version=2)
    agent.control = LocalControlPlane(ctl)
    transport = httpx.ASGITransport(app=create_app(ctl))
    async with httpx.AsyncClient(transport=transport, base_url="http://atoll") as client:
        record = image_record(1, tags=["busybox:latest"], cmd=["sh"])
        resp = await client.post("/v1/projects/default/images/import", content=image_archive(record))
        resp.raise_for_status()
        resp = await client.post(LIST, json={"image": "busybox", "labels": {"app": "web", "tier": "front"}})
        resp.raise_for_status()
        first: str = resp.json()["id"]
    with sessions.begin() as s:
        row = s.get(InstanceRow, first)
        assert row is not None
        values = {attr.key: getattr(row, attr.key) for attr in inspect(InstanceRow).column_attrs}
        for start in range(0, rows - 1, 5000):
            batch = [
                dict(
                    values, id=secrets.token_hex(32), name=f"copy-{i}", created_at=f"{row.created_at}{i:07d}"
                )
                for i in range(start, min(rows - 1, start + 5000))
            ]
            s.execute(insert(InstanceRow), batch)
    sessions.kw["bind"].dispose()
    return first


def serve(db: Path, port: int, docker_sock: Path, batch: int) -> None:
    """The controller process: the product's app and Docker listener on one loop, plus the routes as
    they were, for the comparison."""
    import uvicorn

    ctl = Controller(sessions=open_database(f"sqlite:///{db}"), agents=AgentRegistry())
    app = create_app(ctl)

    @app.get("/bench/old-list")
    async def old_list() -> list[Instance]:
        return instances.list_instances(ctl, project="default", all=True)

    @app.get("/bench/list-batch")
    async def batch_list() -> Response:
        def answer() -> bytes:
            batches = instances.instance_batches(ctl, project="default", all=True, batch=batch)
            return json_list(INSTANCE_LIST, batches)

        return Response(await off_loop(answer), media_type="application/json")

    containers = Containers(ctl)

    async def old_docker_list(req: Request) -> Json:
        def build() -> list[dict[str, Any]]:
            names = containers.network_names()
            return [summary(i, names) for i in instances.list_instances(ctl, project="default", all=True)]

        return Json(await off_loop(build))

    docker = DockerServer(
        Router([*containers.routes(), Route("GET", "/bench/old-containers", old_docker_list)]), map_error
    )

    async def both() -> None:
        await docker.listen(f"unix://{docker_sock}")
        try:
            await uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            ).serve()
        finally:
            await docker.close()

    asyncio.run(both())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Samples:
    def __init__(self) -> None:
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.probes: list[float] = []
        self.rows = 0

    def summary(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "list_wall": percentiles(self.walls),
            "list_cpu_s_mean": round(sum(self.cpus) / len(self.cpus), 2),
            "probe_during_list": {**percentiles(self.probes), "max_ms": round(max(self.probes) * 1000, 1)},
        }


def measure(
    url: str,
    pid: int,
    path: str,
    params: dict[str, str],
    first: str,
    out: Samples,
    *,
    probing: bool,
    docker_sock: Path | None = None,
) -> None:
    """One list; with ``probing``, cheap requests sent back to back while it is under way (their own CPU
    then counts in the list's, so the CPU figure is taken from lists without them)."""
    listing = threading.Event()
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            while probing and not done.is_set():
                began = time.monotonic()
                client.get(f"{LIST}/{first}").raise_for_status()
                if listing.is_set():
                    out.probes.append(time.monotonic() - began)

    prober = threading.Thread(target=probe)
    prober.start()
    time.sleep(0.3)
    transport = httpx.HTTPTransport(uds=str(docker_sock)) if docker_sock else None
    with httpx.Client(
        base_url="http://docker" if docker_sock else url, timeout=600, transport=transport
    ) as client:
        cpu = cpu_seconds(pid)
        began = time.monotonic()
        listing.set()
        resp = client.get(path, params=params)
        listing.clear()
        if probing:
            out.walls.append(time.monotonic() - began)
        else:
            out.cpus.append(cpu_seconds(pid) - cpu)
    done.set()
    prober.join()
    resp.raise_for_status()
    out.rows = len(resp.json())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--docker", action="store_true", help="also the Docker API's list, old and new")
    parser.add_argument(
        "--native-batch", type=int, default=0, help="also the native list read this many rows at a time"
    )
    parser.add_argument("--serve", nargs=4, metavar=("DB", "PORT", "SOCK", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]), Path(args.serve[2]), int(args.serve[3]))
        return
    with tempfile.TemporaryDirectory(prefix="atoll-bench-list-") as tmp:
        db = Path(tmp) / "atoll.db"
        began = time.monotonic()
        first = asyncio.run(_seed(db, args.rows))
        print(f"seeded {args.rows} rows in {time.monotonic() - began:.1f} s", file=sys.stderr)
        port = free_port()
        sock = Path(tmp) / "docker.sock"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.list_block",
                "--serve",
                str(db),
                str(port),
                str(sock),
                str(args.native_batch),
            ]
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    httpx.get(f"{url}{LIST}/{first}", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            results = {"old": Samples(), "new": Samples()}
            if args.docker:
                results.update(docker_old=Samples(), docker_new=Samples())
            batched = f"new_batch{args.native_batch}"
            if args.native_batch:
                results[batched] = Samples()
            for _ in range(args.rounds):  # alternately, so that a change in the machine's load hits all
                for probing in (False, True):
                    measure(url, server.pid, "/bench/old-list", {}, first, results["old"], probing=probing)
                    measure(url, server.pid, LIST, {"all": "true"}, first, results["new"], probing=probing)
                    if args.native_batch:
                        measure(
                            url, server.pid, "/bench/list-batch", {}, first, results[batched], probing=probing
                        )
                    if args.docker:
                        for name, path in (
                            ("docker_old", "/bench/old-containers"),
                            ("docker_new", "/v1.41/containers/json"),
                        ):
                            measure(
                                url,
                                server.pid,
                                path,
                                {"all": "1"},
                                first,
                                results[name],
                                probing=probing,
                                docker_sock=sock,
                            )
        finally:
            server.terminate()
            server.wait(30)
    load = Path("/proc/loadavg").read_text().split()[:3]
    summary = {name: samples.summary() for name, samples in results.items()}
    print(json.dumps({"rows": args.rows, "loadavg": load, **summary}, indent=1))


if __name__ == "__main__":
    main()
