"""Resolver benchmark: the agent's embedded DNS against the floor of any resolver served by the agent.

(a) latency of an ``A`` query answered locally, asked over UDP from inside an instance's namespace, vs.
    a bare asyncio UDP responder in the same namespace on the same event loop that sends back a
    prebuilt reply (no parsing, no lookup): the ratio is what parsing and answering cost. Once with
    the same query again and again (served from the answer cache), once with a new name each time;
(b) the same queries from 8 clients at once: queries per second, both;
(c) a refresh in which every network changed: 1000 instances on 10 networks, each on 2 of them.

Everything happens in a network namespace made for the run (a host), with names carrying the prefix
``bd``; nothing leaves it. Run as root: `.venv/bin/python bench/resolver.py [--queries 2000]`.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import dns.message

from atoll.agent.net import netns
from atoll.agent.net.dataplane import HostNetwork, NetConfig
from atoll.agent.net.dnsanswer import NameView, index_network
from atoll.agent.net.dnsserver import NameService
from atoll.agent.net.names import Names
from atoll.model.dnsrecords import NameRecord, NetworkNames
from atoll.model.instance import InstanceSpec, ProcessSpec
from atoll.model.network import PortSpec

BASELINE = "127.0.0.12"

CLIENT = """
import json, socket, sys, time, threading
import dns.message
server, count, clients, unique = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
wire = dns.message.make_query("peer", "A").to_wire()
def one(out):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.connect((server, 53))
    names = [dns.message.make_query(f"n{threading.get_ident()}x{i}", "A").to_wire() for i in range(count)]
    for i in range(count):
        t = time.perf_counter()
        s.send(names[i] if unique else wire)
        s.recv(4096)
        out.append(time.perf_counter() - t)
lat = []
start = time.perf_counter()
threads = [threading.Thread(target=one, args=(lat,)) for _ in range(clients)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"latencies": lat, "seconds": time.perf_counter() - start}))
"""


def _id() -> str:
    return secrets.token_hex(32)


def _spec(network_id: str, ip: str) -> InstanceSpec:
    mac = "02:a7:" + ":".join(secrets.token_hex(1) for _ in range(4))
    port = PortSpec(id=_id(), network_id=network_id, mac=mac, ip=ip, prefix_len=24)
    return InstanceSpec(
        id=_id(),
        name="b",
        project="p",
        image_id="",
        layers=[],
        process=ProcessSpec(args=["sh"]),
        ports=[port],
    )


class Echo(asyncio.DatagramProtocol):
    """The floor: answers every query with the same prebuilt reply, its id patched in."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data[:2] + self.reply[2:], addr)


async def _client(path: Path, server: str, count: int, clients: int, unique: bool = False) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "nsenter",
        f"--net={path}",
        sys.executable,
        "-c",
        CLIENT,
        server,
        str(count),
        str(clients),
        "1" if unique else "0",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    result: dict[str, Any] = json.loads(out)
    return result


def _summary(run: dict[str, Any]) -> dict[str, float]:
    lat = sorted(run["latencies"])
    return {
        "median_us": round(statistics.median(lat) * 1e6, 1),
        "p99_us": round(lat[int(len(lat) * 0.99) - 1] * 1e6, 1),
        "qps": round(len(lat) / run["seconds"]),
    }


def _refresh(instances: int = 1000, networks: int = 10) -> float:
    """What a refresh costs when every network changed: index each network, then a view per instance."""
    tables = [NetworkNames(_id(), records=[], cidrs=[f"10.{n}.0.0/16"]) for n in range(networks)]
    for i in range(instances):
        for n in (i % networks, (i + 1) % networks):
            tables[n].records.append(NameRecord(f"i{i}", f"10.{n}.{i // 250}.{i % 250 + 1}", str(i), True))
    start = time.perf_counter()
    indexes = [index_network(t) for t in tables]
    for i in range(instances):
        NameView((indexes[i % networks], indexes[(i + 1) % networks]))
    return time.perf_counter() - start


async def main(queries: int) -> dict[str, Any]:
    host = f"atoll-bench-dns-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", host], check=True)
    run_dir = Path("/run") / host
    names = Names("bd", f"atoll_bench_dns_{host[-6:]}")
    net = HostNetwork(
        NetConfig(names=names, netns_dir=run_dir / "netns", host_netns=Path("/run/netns") / host)
    )
    network_id = _id()
    asker, peer = _spec(network_id, "10.0.0.2"), _spec(network_id, "10.0.0.3")
    table = [
        NetworkNames(
            network_id,
            records=[
                NameRecord("asker", "10.0.0.2", asker.id, True),
                NameRecord("peer", "10.0.0.3", peer.id, True),
            ],
            cidrs=["10.0.0.0/24"],
        )
    ]

    async def fetch() -> list[NetworkNames]:
        return table

    service = NameService(fetch, net.netns_path, host_netns=Path("/run/netns") / host)
    echo: asyncio.DatagramTransport | None = None
    try:
        for spec in (asker, peer):
            await net.attach(spec)
            await service.serve(spec)
        await service.refresh()
        path = net.netns_path(asker.id)

        def bind_echo() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((BASELINE, 53))
            sock.setblocking(False)
            return sock

        sock = await asyncio.to_thread(netns.run_in, path, bind_echo)
        query = dns.message.make_query("peer", "A")
        reply = dns.message.make_response(query)
        reply.answer.append(dns.rrset.from_text("peer.", 600, "IN", "A", "10.0.0.3"))
        echo, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: Echo(reply.to_wire()), sock=sock
        )
        await _client(path, "127.0.0.11", 50, 1)  # warm up
        results: dict[str, Any] = {
            "resolver_1": _summary(await _client(path, "127.0.0.11", queries, 1)),
            "floor_1": _summary(await _client(path, BASELINE, queries, 1)),
            # Every query a new name (NXDOMAIN, answered here): the cost without the answer cache.
            "resolver_uncached_1": _summary(await _client(path, "127.0.0.11", queries, 1, unique=True)),
            "resolver_8": _summary(await _client(path, "127.0.0.11", queries // 8, 8)),
            "floor_8": _summary(await _client(path, BASELINE, queries // 8, 8)),
        }
    finally:
        if echo is not None:
            echo.close()
        await service.close()
        for spec in (asker, peer):
            await net.release(spec.id, spec.ports)
        subprocess.run(["ip", "netns", "del", host], check=False)
        shutil.rmtree(run_dir, ignore_errors=True)
    floor = results["floor_1"]["median_us"]
    results["latency_ratio"] = round(results["resolver_1"]["median_us"] / floor, 2)
    results["latency_ratio_uncached"] = round(results["resolver_uncached_1"]["median_us"] / floor, 2)
    results["qps_ratio_8"] = round(results["resolver_8"]["qps"] / results["floor_8"]["qps"], 2)
    results["refresh_1000_instances_ms"] = round(_refresh() * 1000, 1)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    figures = asyncio.run(main(args.queries))
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(json.dumps(figures))
