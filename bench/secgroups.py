"""Security-group benchmark: what enforcing security groups in nftables costs, measured in one run.

(a) Rule-set updates: the agent re-renders its whole table and replaces it in one ``nft -f``
    transaction on every change (a rule, a port's groups, a group's members). Median time of render +
    apply for N ports (two groups: ``default`` with every port as a member, and ``web`` with three rules),
    N = 10, 100, 1000, in a namespace of its own.
(b) Throughput: iperf3 TCP between two instances on one tenant bridge, wired by the real dataplane
    (``HostNetwork``) in a "host" namespace, with the security groups enforced (default group), as a
    ratio against the same bridge with Atoll's tables removed (br_netfilter still on: the baseline a
    host with any bridge firewall has) and against isolation rules only (no security groups).

Run as root: `.venv/bin/python bench/secgroups.py [--seconds 3]`. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from atoll.agent.net import nft, secrules
from atoll.agent.net.dataplane import HostNetwork, NetConfig
from atoll.agent.net.names import Names
from atoll.model.instance import InstanceSpec, ProcessSpec
from atoll.model.network import PortSpec
from atoll.model.secgroups import Direction, GroupPolicy, HostSecurity, PortSecurity, Protocol, RuleSpec


def new_id() -> str:
    return secrets.token_hex(32)


def port(network: str, ip: str) -> PortSpec:
    raw = secrets.token_hex(4)
    mac = "02:a7:" + ":".join(raw[i : i + 2] for i in range(0, 8, 2))
    return PortSpec(id=new_id(), network_id=network, mac=mac, ip=ip, prefix_len=16)


def instance(nic: PortSpec) -> InstanceSpec:
    return InstanceSpec(
        id=new_id(),
        name="i",
        project="p",
        image_id="",
        layers=[],
        process=ProcessSpec(args=["sh"]),
        ports=[nic],
    )


def policy(ports: list[PortSpec]) -> HostSecurity:
    default, web = new_id(), new_id()
    rules = [
        RuleSpec(Direction.INGRESS, Protocol.TCP, 80, 80),
        RuleSpec(Direction.INGRESS, Protocol.TCP, 8000, 8100, remote_cidr="10.0.0.0/8"),
        RuleSpec(Direction.INGRESS, Protocol.ICMP, remote_group=default),
    ]
    groups = [
        GroupPolicy(
            default,
            [RuleSpec(Direction.EGRESS), RuleSpec(Direction.INGRESS, remote_group=default)],
            [p.ip for p in ports],
        ),
        GroupPolicy(web, [RuleSpec(Direction.EGRESS), *rules], []),
    ]
    return HostSecurity(
        ports=[PortSecurity(p.id, p.network_id, p.ip, p.mac, [default, web]) for p in ports], groups=groups
    )


def in_ns(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, check=True)


def updates(ns: str, names: Names, counts: list[int], repeats: int = 5) -> dict[str, Any]:
    out: dict[str, Any] = {}
    network = new_id()
    for n in counts:
        ports = [port(network, f"10.{i // 250}.{i % 250 + 1}.2") for i in range(n)]
        by_id = {p.id: p for p in ports}
        renders, applies = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            rendered = secrules.render(names, policy(ports), by_id)
            script = nft.render(names, {names.bridge(network): 1}, security=rendered)
            t1 = time.perf_counter()
            in_ns_input(ns, script)
            t2 = time.perf_counter()
            renders.append(t1 - t0)
            applies.append(t2 - t1)
        out[str(n)] = {
            "render_ms": round(statistics.median(renders) * 1000, 2),
            "apply_ms": round(statistics.median(applies) * 1000, 2),
            "script_lines": script.count("\n"),
        }
    in_ns_input(ns, nft.render_delete(names))
    return out


def in_ns_input(ns: str, script: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True, check=True)


def iperf(server_ns: Path, client_ns: Path, address: str, seconds: int) -> float:
    server = subprocess.Popen(
        ["nsenter", f"--net={server_ns}", "iperf3", "-s", "-1"], stdout=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        done = subprocess.run(
            ["nsenter", f"--net={client_ns}", "iperf3", "-c", address, "-t", str(seconds), "-J"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return float(json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        server.kill()
        server.wait()


def throughput(host: str, names: Names, seconds: int, rounds: int) -> dict[str, Any]:
    """The three set-ups take turns, ``rounds`` times, so a noisy neighbour hits all of them alike."""
    network = new_id()
    a, b = (instance(port(network, ip)) for ip in ("10.0.0.2", "10.0.0.3"))
    secured = policy([a.ports[0], b.ports[0]])
    samples: dict[str, list[float]] = {"security_groups": [], "isolation_only": [], "no_tables": []}
    with tempfile.TemporaryDirectory() as tmp:
        config = NetConfig(names=names, netns_dir=Path(tmp) / "netns", host_netns=Path("/run/netns") / host)
        try:
            asyncio.run(HostNetwork(config).sync([a, b]))
            pa, pb = (Path(tmp) / "netns" / spec.id for spec in (a, b))
            for _ in range(rounds):
                for mode in samples:
                    net = HostNetwork(config)  # a fresh agent: it writes its tables whatever is there
                    if mode == "security_groups":
                        asyncio.run(net.set_security(secured))
                    asyncio.run(net.sync([a, b]))
                    if mode == "no_tables":
                        for family in ("inet", "arp", "bridge"):
                            delete = [
                                "ip",
                                "netns",
                                "exec",
                                host,
                                "nft",
                                "delete",
                                "table",
                                family,
                                names.table,
                            ]
                            subprocess.run(delete, capture_output=True, check=False)
                    samples[mode].append(iperf(pa, pb, "10.0.0.2", seconds))
        finally:
            asyncio.run(HostNetwork(config).sync([]))
    results: dict[str, Any] = {f"{k}_gbps": round(statistics.median(v), 2) for k, v in samples.items()}
    base = statistics.median(samples["no_tables"])
    results["ratio_security_groups"] = round(statistics.median(samples["security_groups"]) / base, 3)
    results["ratio_isolation_only"] = round(statistics.median(samples["isolation_only"]) / base, 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    suffix = secrets.token_hex(2)
    host = f"atoll-bench-sg-{suffix}"
    names = Names("q" + suffix[:3], f"atoll_bench_sg_{suffix}")
    subprocess.run(["ip", "netns", "add", host], check=True)
    try:
        report = {
            "updates": updates(host, names, [10, 100, 1000]),
            "throughput": throughput(host, names, args.seconds, args.rounds),
        }
    finally:
        subprocess.run(["ip", "netns", "del", host], check=False)
    for n, figures in report["updates"].items():
        print(
            f"rule set for {n:>4} ports: render {figures['render_ms']} ms, nft -f {figures['apply_ms']} ms",
            file=sys.stderr,
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
