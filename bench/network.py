"""Network benchmark: TCP throughput through Atoll's dataplane, against a baseline measured in the same run.

(a) one host: instance to instance on one tenant network (veth -> bridge -> veth, with Atoll's nftables
    tables in place), against a bare veth pair between two namespaces;
(b) across hosts: instance to instance on one overlay network (veth -> bridge -> VXLAN -> underlay ->
    VXLAN -> bridge -> veth), against the same two hosts talking over the underlay directly.

Hosts and instances are network namespaces this benchmark makes (named ``atoll-bench-<hex>-...``) and
wires with the agent's own dataplane code (``HostNetwork``, ``OverlayPlane``); the "underlay" is a veth
pair between the two host namespaces. No traffic leaves the machine. iperf3 (Debian) runs in the
namespaces. Baseline and Atoll run back to back ``--rounds`` times (``--seconds`` each), and the ratio
reported is the median of the pairs' ratios: on a shared machine the load changes by the second, and a
pair sees about the same load.

The throughput of a single stream depends on the load of the machine; the CPU time per KiB (both
iperf3 processes, user and system, which includes the kernel's softirq work in their context) much less:
it counts the work each path costs, not the waiting. The load average is printed with the figures.

With ``--security`` the instances' ports are in a ``default`` security group (all egress, ingress from
the group's members), enforced as a host with a controller enforces it (stateful rules through
``br_netfilter``, anti-spoofing); without it, only the isolation rules are loaded, as for a dataplane run
without a controller.

Run as root: ``.venv/bin/python bench/network.py [--seconds 3] [--rounds 8] [--security]``. The last line
printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atoll.agent.net.dataplane import HostNetwork, NetConfig
from atoll.agent.net.names import Names
from atoll.agent.net.overlay import OverlayConfig, OverlayPlane
from atoll.model.instance import InstanceSpec, ProcessSpec
from atoll.model.network import PortSpec
from atoll.model.overlay import VXLAN_OVERHEAD, OverlayNetwork, RemotePort
from atoll.model.secgroups import Direction, GroupPolicy, HostSecurity, PortSecurity, RuleSpec

RUN = f"atoll-bench-{secrets.token_hex(3)}"
NAMES = Names("bn", RUN.replace("-", "_"))
UNDERLAY_MTU = 1500
IPERF_PORT = 5201
GROUP = secrets.token_hex(32)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def netns_path(name: str) -> Path:
    return Path("/run/netns") / name


@contextmanager
def namespaces(*tags: str) -> Iterator[list[str]]:
    names = [f"{RUN}-{tag}" for tag in tags]
    try:
        for name in names:
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        yield names
    finally:
        for name in names:
            sh("ip", "netns", "del", name, check=False)


def veth_between(a: str, b: str, a_ip: str, b_ip: str, mtu: int = UNDERLAY_MTU) -> None:
    sh(
        "ip",
        "-n",
        a,
        "link",
        "add",
        "link0",
        "mtu",
        str(mtu),
        "type",
        "veth",
        "peer",
        "name",
        "link0",
        "netns",
        b,
    )
    for ns, ip in ((a, a_ip), (b, b_ip)):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "link0")
        sh("ip", "-n", ns, "link", "set", "link0", "up")


@dataclass(frozen=True)
class Run:
    gbps: float
    """Received by the server over one TCP stream."""
    cpu_ns_per_kb: float
    """CPU time of both iperf3 processes (user and system, which includes the softirq work the kernel
    does in their context: the whole path through veths, bridges and VXLAN) per KiB received. Less
    sensitive to the machine's load than the throughput: it counts the work, not the waiting."""


def iperf(server_ns: Path, client_ns: Path, address: str, seconds: int) -> Run:
    """One TCP stream from the client to the server for ``seconds``."""
    server = subprocess.Popen(
        ["nsenter", f"--net={server_ns}", "iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):  # until the server listens
            probe = sh("nsenter", f"--net={server_ns}", "ss", "-Hltn", f"sport = :{IPERF_PORT}", check=False)
            if probe.stdout.strip():
                break
            time.sleep(0.1)
        out = sh(
            "nsenter",
            f"--net={client_ns}",
            "iperf3",
            "-c",
            address,
            "-p",
            str(IPERF_PORT),
            "-t",
            str(seconds),
            "-J",
        )
        end = json.loads(out.stdout)["end"]
        received = end["sum_received"]
        cpu = end["cpu_utilization_percent"]
        cpu_seconds = (cpu["host_total"] + cpu["remote_total"]) / 100 * received["seconds"]
        return Run(
            gbps=float(received["bits_per_second"]) / 1e9,
            cpu_ns_per_kb=cpu_seconds * 1e9 / (received["bytes"] / 1024),
        )
    finally:
        server.wait(timeout=30)


def spec(port: PortSpec) -> InstanceSpec:
    return InstanceSpec(
        id=secrets.token_hex(32),
        name="bench",
        project="bench",
        image_id="",
        layers=[],
        process=ProcessSpec(args=["sh"]),
        ports=[port],
    )


def port(network_id: str, ip: str, mtu: int) -> PortSpec:
    mac = "02:a7:" + ":".join(secrets.token_hex(1) for _ in range(4))
    return PortSpec(id=secrets.token_hex(32), network_id=network_id, mac=mac, ip=ip, prefix_len=24, mtu=mtu)


def default_policy(specs: list[InstanceSpec], members: list[str]) -> HostSecurity:
    """The ``default`` group as the controller hands it to a host: all egress, ingress from its members."""
    rules = [RuleSpec(Direction.EGRESS), RuleSpec(Direction.INGRESS, remote_group=GROUP)]
    return HostSecurity(
        ports=[PortSecurity(p.id, p.network_id, p.ip, p.mac, [GROUP]) for s in specs for p in s.ports],
        groups=[GroupPolicy(GROUP, rules, members)],
    )


def paired(rounds: int, baseline: Callable[[], Run], atoll: Callable[[], Run]) -> dict[str, float]:
    """Baseline and Atoll back to back, ``rounds`` times, which one goes first alternating: the ratio of
    each pair is taken while the machine's load is about the same, and the median ratio is reported.
    ``cost_ratio`` is the baseline's CPU time per byte over Atoll's (1.0: Atoll's path costs no more)."""
    base: list[Run] = []
    ours: list[Run] = []
    for i in range(rounds):
        if i % 2:
            base.append(baseline())
            ours.append(atoll())
        else:
            ours.append(atoll())
            base.append(baseline())
    ratios = [o.gbps / b.gbps for o, b in zip(ours, base, strict=True)]
    costs = [b.cpu_ns_per_kb / o.cpu_ns_per_kb for o, b in zip(ours, base, strict=True)]
    return {
        "baseline_gbps": round(statistics.median(r.gbps for r in base), 2),
        "atoll_gbps": round(statistics.median(r.gbps for r in ours), 2),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "baseline_cpu_ns_per_kb": round(statistics.median(r.cpu_ns_per_kb for r in base)),
        "atoll_cpu_ns_per_kb": round(statistics.median(r.cpu_ns_per_kb for r in ours)),
        "cost_ratio": round(statistics.median(costs), 3),
    }


def one_host(tmp: Path, seconds: int, rounds: int, security: bool = False) -> dict[str, float]:
    """The baseline is a bare veth pair between two namespaces."""
    with namespaces("v1", "v2", "host") as (v1, v2, host):
        veth_between(v1, v2, "10.201.0.1", "10.201.0.2")
        net = HostNetwork(NetConfig(names=NAMES, netns_dir=tmp / "one", host_netns=netns_path(host)))
        network = secrets.token_hex(32)
        a, b = spec(port(network, "10.202.0.2", 1500)), spec(port(network, "10.202.0.3", 1500))
        policy = default_policy([a, b], ["10.202.0.2", "10.202.0.3"]) if security else None
        try:
            for s in (a, b):
                asyncio.run(net.attach(s, security=policy))
            return paired(
                rounds,
                lambda: iperf(netns_path(v2), netns_path(v1), "10.201.0.2", seconds),
                lambda: iperf(net.netns_path(b.id), net.netns_path(a.id), "10.202.0.3", seconds),
            )
        finally:
            asyncio.run(HostNetwork(net.config).sync([]))


def across_hosts(tmp: Path, seconds: int, rounds: int, security: bool = False) -> dict[str, float]:
    """The baseline is the two host namespaces talking over their underlay veth."""
    with namespaces("ha", "hb") as (ha, hb):
        underlay = ("10.203.0.1", "10.203.0.2")
        veth_between(ha, hb, *underlay)
        mtu = UNDERLAY_MTU - VXLAN_OVERHEAD
        network, vni = secrets.token_hex(32), 1 + secrets.randbelow((1 << 24) - 1)
        hosts = []
        for name, address in zip((ha, hb), underlay, strict=True):
            net = HostNetwork(NetConfig(names=NAMES, netns_dir=tmp / name, host_netns=netns_path(name)))
            overlay = OverlayPlane(OverlayConfig(NAMES, underlay_ip=address, host_netns=netns_path(name)))
            hosts.append((net, overlay, address))
        a, b = spec(port(network, "10.204.0.2", mtu)), spec(port(network, "10.204.0.3", mtu))
        try:
            for (net, _, _), s in zip(hosts, (a, b), strict=True):
                policy = default_policy([s], ["10.204.0.2", "10.204.0.3"]) if security else None
                asyncio.run(net.attach(s, security=policy))
            for (_, overlay, _), (_, _, peer), other in zip(hosts, reversed(hosts), (b, a), strict=True):
                p = other.ports[0]
                remote = RemotePort(p.id, p.mac, p.ip, "peer", peer)
                asyncio.run(overlay.converge([OverlayNetwork(network, vni, mtu, [peer], [remote])]))
            return paired(
                rounds,
                lambda: iperf(netns_path(hb), netns_path(ha), underlay[1], seconds),
                lambda: iperf(
                    hosts[1][0].netns_path(b.id), hosts[0][0].netns_path(a.id), "10.204.0.3", seconds
                ),
            )
        finally:
            for net, overlay, _ in hosts:
                asyncio.run(HostNetwork(net.config).sync([]))
                asyncio.run(OverlayPlane(overlay.config).converge([]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--security", action="store_true", help="enforce a default security group")
    args = parser.parse_args()
    if shutil.which("iperf3") is None:
        sys.exit("iperf3 is missing: apt-get install iperf3 (scripts/setup-system installs it)")
    results: dict[str, Any] = {
        "seconds": args.seconds,
        "rounds": args.rounds,
        "security": args.security,
        "loadavg": _loadavg(),
    }
    with tempfile.TemporaryDirectory(prefix=f"{RUN}-") as tmp:
        one = results["one_host"] = one_host(Path(tmp), args.seconds, args.rounds, args.security)
        print(
            f"(a) one host: instance to instance {one['atoll_gbps']} Gbit/s, bare veth pair "
            f"{one['baseline_gbps']} Gbit/s: ratio {one['ratio']} ({one['ratio_min']}-{one['ratio_max']}; "
            f"target >= 0.9); CPU per KiB {one['atoll_cpu_ns_per_kb']} ns against "
            f"{one['baseline_cpu_ns_per_kb']} ns: cost ratio {one['cost_ratio']}",
            flush=True,
        )
        across = results["across_hosts"] = across_hosts(Path(tmp), args.seconds, args.rounds, args.security)
        print(
            f"(b) across hosts: over VXLAN {across['atoll_gbps']} Gbit/s, underlay "
            f"{across['baseline_gbps']} Gbit/s: ratio {across['ratio']} ({across['ratio_min']}-"
            f"{across['ratio_max']}; target >= 0.7); CPU per KiB {across['atoll_cpu_ns_per_kb']} ns against "
            f"{across['baseline_cpu_ns_per_kb']} ns: cost ratio {across['cost_ratio']}",
            flush=True,
        )
    results["loadavg_after"] = _loadavg()
    print(json.dumps(results))


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
