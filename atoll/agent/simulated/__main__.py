"""`python -m atoll.agent.simulated --tokens FILE --base DIR`: join one simulated host per token and
serve them until SIGTERM or SIGINT; then write the fleet's figures (joins, heartbeat latency, calls
served) as JSON to `--stats`. Prints `ready N` once every host has joined and sent its first heartbeat."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from pathlib import Path

from atoll.agent.simulated.fleet import GIB, Fleet
from atoll.model.cluster import HostResources


async def run(args: argparse.Namespace) -> None:
    tokens = [t.strip() for t in args.tokens.read_text().splitlines() if t.strip()]
    capacity = HostResources(
        cpu_millis=args.cpus * 1000,
        memory_bytes=args.memory_gib * GIB,
        disk_bytes=args.disk_gib * GIB,
        pids=4_194_304,
    )
    fleet = Fleet(
        args.base,
        listen=args.listen,
        heartbeat_interval=args.heartbeat_interval,
        capacity=capacity,
        join_concurrency=args.join_concurrency,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        adding = asyncio.create_task(fleet.add_hosts(tokens, args.prefix))
        waiting = asyncio.create_task(stop.wait())
        await asyncio.wait({adding, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if adding.done():
            adding.result()
            print(f"ready {len(fleet.hosts)} {fleet.address}", flush=True)
            await stop.wait()
        else:
            adding.cancel()
    finally:
        if args.stats:
            args.stats.write_text(json.dumps(fleet.summary()) + "\n")
        await fleet.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=Path, required=True, help="a file with one join token per line")
    parser.add_argument("--base", type=Path, required=True, help="where each host keeps its certificate")
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--prefix", default="sim", help="host names are PREFIX-0000, PREFIX-0001, ...")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument("--join-concurrency", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=32)
    parser.add_argument("--memory-gib", type=int, default=128)
    parser.add_argument("--disk-gib", type=int, default=2000)
    parser.add_argument("--stats", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
