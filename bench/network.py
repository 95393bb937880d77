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

BIG TCP (``--big-tcp``, the agent's ``ATOLL_BIG_TCP``; ``auto`` by default, as the agent): the agent's
veths take GSO/GRO sizes above 64 KiB, and so does an instance's NIC on a network that stays on its
bridge, as in (a). A bare veth pair with the default sizes is then no longer like for like: (a) also
runs a second bare pair with the same sizes in every round and reports the ratios against it
(``like_*``). In (b) the instances' NICs stay at 64 KiB (a VXLAN device takes no more), so the
default underlay is the like-for-like baseline there.

Run as root: ``.venv/bin/python bench/network.py [--seconds 3] [--rounds 8] [--security] [--big-tcp off]``.
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
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atoll.agent.net import bigtcp, netns
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


def paired(
    rounds: int, baseline: Callable[[], Run], atoll: Callable[[], Run], like: Callable[[], Run] | None = None
) -> dict[str, float]:
    """Baseline and Atoll back to back, ``rounds`` times, the order alternating: the ratio of each pair
    is taken while the machine's load is about the same, and the median ratio is reported.
    ``cost_ratio`` is the baseline's CPU time per byte over Atoll's (1.0: Atoll's path costs no more).
    ``like``, if given, is a second baseline run in the same rounds: the bare path with the GSO sizes
    Atoll's path has (BIG TCP), reported as ``like_*``, so a faster baseline is not mistaken for a
    cheaper path."""
    runs: dict[str, list[Run]] = {"baseline": [], "atoll": [], "like": []}
    order = [("atoll", atoll), ("baseline", baseline)] + ([("like", like)] if like is not None else [])
    for i in range(rounds):
        for key, run in reversed(order) if i % 2 else order:
            runs[key].append(run())
    ours = runs["atoll"]
    out: dict[str, float] = {"atoll_gbps": round(statistics.median(r.gbps for r in ours), 2)}
    out["atoll_cpu_ns_per_kb"] = round(statistics.median(r.cpu_ns_per_kb for r in ours))
    for key, prefix in (("baseline", ""), ("like", "like_")):
        base = runs[key]
        if not base:
            continue
        ratios = [o.gbps / b.gbps for o, b in zip(ours, base, strict=True)]
        costs = [b.cpu_ns_per_kb / o.cpu_ns_per_kb for o, b in zip(ours, base, strict=True)]
        out |= {
            f"{prefix}baseline_gbps": round(statistics.median(r.gbps for r in base), 2),
            f"{prefix}ratio": round(statistics.median(ratios), 3),
            f"{prefix}ratio_min": round(min(ratios), 3),
            f"{prefix}ratio_max": round(max(ratios), 3),
            f"{prefix}baseline_cpu_ns_per_kb": round(statistics.median(r.cpu_ns_per_kb for r in base)),
            f"{prefix}cost_ratio": round(statistics.median(costs), 3),
        }
    return out


def set_gso(namespace: str, ifname: str, size: int) -> None:
    """BIG TCP on a bare veth end, as the agent sets it on its own (``bigtcp``)."""
    netns.run_in(netns_path(namespace), lambda: bigtcp.apply(socket.if_nametoindex(ifname), size))


@dataclass(frozen=True)
class Options:
    seconds: int = 3
    rounds: int = 8
    security: bool = False
    """Enforce a default security group."""
    gso_size: int = bigtcp.LEGACY
    fast_path: bool = True


def one_host(tmp: Path, options: Options) -> dict[str, float]:
    """The baseline is a bare veth pair between two namespaces; with BIG TCP, the like-for-like one a
    second bare pair with the same GSO sizes."""
    with namespaces("v1", "v2", "v3", "v4", "host") as (v1, v2, v3, v4, host):
        veth_between(v1, v2, "10.201.0.1", "10.201.0.2")
        veth_between(v3, v4, "10.201.0.1", "10.201.0.2")
        for ns in (v3, v4):
            set_gso(ns, "link0", options.gso_size)
        config = NetConfig(
            names=NAMES,
            netns_dir=tmp / "one",
            host_netns=netns_path(host),
            gso_size=options.gso_size,
            fast_path=options.fast_path,
        )
        net = HostNetwork(config)
        network = secrets.token_hex(32)
        a, b = spec(port(network, "10.202.0.2", 1500)), spec(port(network, "10.202.0.3", 1500))
        policy = default_policy([a, b], ["10.202.0.2", "10.202.0.3"]) if options.security else None
        try:
            for s in (a, b):
                asyncio.run(net.attach(s, security=policy))

            def like() -> Run:
                return iperf(netns_path(v4), netns_path(v3), "10.201.0.2", options.seconds)

            out = paired(
                options.rounds,
                lambda: iperf(netns_path(v2), netns_path(v1), "10.201.0.2", options.seconds),
                lambda: iperf(net.netns_path(b.id), net.netns_path(a.id), "10.202.0.3", options.seconds),
                like if options.gso_size > bigtcp.LEGACY else None,
            )
            return out | {"fast_packets": net.fast.forwarded()}
        finally:
            asyncio.run(HostNetwork(net.config).sync([]))


def across_hosts(tmp: Path, options: Options) -> dict[str, float]:
    """The baseline is the two host namespaces talking over their underlay veth. With BIG TCP on, the
    instances' NICs are at 64 KiB all the same (their network has a VXLAN device, which takes no more:
    see ``wiring``), so the like-for-like baseline is the default one."""
    with namespaces("ha", "hb") as (ha, hb):
        underlay = ("10.203.0.1", "10.203.0.2")
        veth_between(ha, hb, *underlay)
        mtu = UNDERLAY_MTU - VXLAN_OVERHEAD
        network, vni = secrets.token_hex(32), 1 + secrets.randbelow((1 << 24) - 1)
        hosts = []
        for name, address in zip((ha, hb), underlay, strict=True):
            config = NetConfig(
                names=NAMES,
                netns_dir=tmp / name,
                host_netns=netns_path(name),
                gso_size=options.gso_size,
                fast_path=options.fast_path,
            )
            net = HostNetwork(config)
            overlay = OverlayPlane(
                OverlayConfig(NAMES, underlay_ip=address, host_netns=netns_path(name)), net.fast
            )
            hosts.append((net, overlay, address))
        a, b = spec(port(network, "10.204.0.2", mtu)), spec(port(network, "10.204.0.3", mtu))
        try:
            for (net, _, _), s in zip(hosts, (a, b), strict=True):
                policy = default_policy([s], ["10.204.0.2", "10.204.0.3"]) if options.security else None
                asyncio.run(net.attach(s, security=policy))
            for (net, overlay, _), (_, _, peer), other in zip(hosts, reversed(hosts), (b, a), strict=True):
                p = other.ports[0]
                remote = RemotePort(p.id, p.mac, p.ip, "peer", peer)
                asyncio.run(net.set_overlaid({network}))  # as the agent does before the device is made
                asyncio.run(overlay.converge([OverlayNetwork(network, vni, mtu, [peer], [remote])]))
            out = paired(
                options.rounds,
                lambda: iperf(netns_path(hb), netns_path(ha), underlay[1], options.seconds),
                lambda: iperf(
                    hosts[1][0].netns_path(b.id), hosts[0][0].netns_path(a.id), "10.204.0.3", options.seconds
                ),
            )
            return out | {"fast_packets": sum(net.fast.forwarded() for net, _, _ in hosts)}
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
    parser.add_argument("--big-tcp", default="auto", help="the agent's ATOLL_BIG_TCP: auto, off or a size")
    parser.add_argument(
        "--no-fast-path",
        action="store_true",
        help="every packet over the bridges (the agent's ATOLL_FAST_PATH=off)",
    )
    args = parser.parse_args()
    gso_size = bigtcp.resolve(args.big_tcp)
    fast_path = not args.no_fast_path
    options = Options(args.seconds, args.rounds, args.security, gso_size, fast_path)
    if shutil.which("iperf3") is None:
        sys.exit("iperf3 is missing: apt-get install iperf3 (scripts/setup-system installs it)")
    settings: dict[str, Any] = {
        "seconds": args.seconds,
        "rounds": args.rounds,
        "security": args.security,
        "gso_size": gso_size,
        "fast_path": fast_path,
    }
    with reported(settings) as results, tempfile.TemporaryDirectory(prefix=f"{RUN}-") as tmp:
        one = results["one_host"] = one_host(Path(tmp), options)
        print(
            f"(a) one host: instance to instance {one['atoll_gbps']} Gbit/s, bare veth pair "
            f"{one['baseline_gbps']} Gbit/s: ratio {one['ratio']} ({one['ratio_min']}-{one['ratio_max']}; "
            f"target >= 0.9); CPU per KiB {one['atoll_cpu_ns_per_kb']} ns against "
            f"{one['baseline_cpu_ns_per_kb']} ns: cost ratio {one['cost_ratio']}",
            flush=True,
        )
        if "like_ratio" in one:
            print(
                f"    like for like (bare veth pair with GSO size {gso_size}): {one['like_baseline_gbps']} "
                f"Gbit/s, ratio {one['like_ratio']} ({one['like_ratio_min']}-{one['like_ratio_max']}); "
                f"CPU per KiB {one['like_baseline_cpu_ns_per_kb']} ns: cost ratio {one['like_cost_ratio']}",
                flush=True,
            )
        across = results["across_hosts"] = across_hosts(Path(tmp), options)
        print(
            f"(b) across hosts: over VXLAN {across['atoll_gbps']} Gbit/s, underlay "
            f"{across['baseline_gbps']} Gbit/s: ratio {across['ratio']} ({across['ratio_min']}-"
            f"{across['ratio_max']}; target >= 0.7); CPU per KiB {across['atoll_cpu_ns_per_kb']} ns against "
            f"{across['baseline_cpu_ns_per_kb']} ns: cost ratio {across['cost_ratio']}",
            flush=True,
        )


def loadavg_text() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextmanager
def reported(results: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The network benchmarks' report (here and in ``netfilter_variants``): ``results`` (the run's
    settings) for the body to add its figures to, with the load average before and after (the figures
    depend on it), printed as one JSON object on the last line when the body ends without an error."""
    results["loadavg"] = loadavg_text()
    yield results
    results["loadavg_after"] = loadavg_text()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
