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

Run as root: ``.venv/bin/python bench/network.py [--seconds 3] [--rounds 8]``. The last line printed is one
JSON object with every figure.
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
from pathlib import Path
from typing import Any

from atoll.agent.net.dataplane import HostNetwork, NetConfig
from atoll.agent.net.names import Names
from atoll.agent.net.overlay import OverlayConfig, OverlayPlane
from atoll.model.instance import InstanceSpec, ProcessSpec
from atoll.model.network import PortSpec
from atoll.model.overlay import VXLAN_OVERHEAD, OverlayNetwork, RemotePort

RUN = f"atoll-bench-{secrets.token_hex(3)}"
NAMES = Names("bn", RUN.replace("-", "_"))
UNDERLAY_MTU = 1500
IPERF_PORT = 5201


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


def iperf(server_ns: Path, client_ns: Path, address: str, seconds: int) -> float:
    """Gbit/s received by the server over one TCP stream from the client."""
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
        report = json.loads(out.stdout)
        return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9
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


def paired(rounds: int, baseline: Callable[[], float], atoll: Callable[[], float]) -> dict[str, float]:
    """Baseline and Atoll back to back, ``rounds`` times, which one goes first alternating: the ratio of
    each pair is taken while the machine's load is about the same, and the median ratio is reported."""
    base, ours, ratios = [], [], []
    for i in range(rounds):
        if i % 2:
            b = baseline()
            o = atoll()
        else:
            o = atoll()
            b = baseline()
        base.append(b)
        ours.append(o)
        ratios.append(o / b)
    return {
        "baseline_gbps": round(statistics.median(base), 2),
        "atoll_gbps": round(statistics.median(ours), 2),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
    }


def one_host(tmp: Path, seconds: int, rounds: int) -> dict[str, float]:
    """The baseline is a bare veth pair between two namespaces."""
    with namespaces("v1", "v2", "host") as (v1, v2, host):
        veth_between(v1, v2, "10.201.0.1", "10.201.0.2")
        net = HostNetwork(NetConfig(names=NAMES, netns_dir=tmp / "one", host_netns=netns_path(host)))
        network = secrets.token_hex(32)
        a, b = spec(port(network, "10.202.0.2", 1500)), spec(port(network, "10.202.0.3", 1500))
        try:
            for s in (a, b):
                asyncio.run(net.attach(s))
            return paired(
                rounds,
                lambda: iperf(netns_path(v2), netns_path(v1), "10.201.0.2", seconds),
                lambda: iperf(net.netns_path(b.id), net.netns_path(a.id), "10.202.0.3", seconds),
            )
        finally:
            asyncio.run(HostNetwork(net.config).sync([]))


def across_hosts(tmp: Path, seconds: int, rounds: int) -> dict[str, float]:
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
                asyncio.run(net.attach(s))
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
    args = parser.parse_args()
    if shutil.which("iperf3") is None:
        sys.exit("iperf3 is missing: apt-get install iperf3 (scripts/setup-system installs it)")
    results: dict[str, Any] = {"seconds": args.seconds, "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix=f"{RUN}-") as tmp:
        one = results["one_host"] = one_host(Path(tmp), args.seconds, args.rounds)
        print(
            f"(a) one host: instance to instance {one['atoll_gbps']} Gbit/s, bare veth pair "
            f"{one['baseline_gbps']} Gbit/s: ratio {one['ratio']} ({one['ratio_min']}-{one['ratio_max']}; "
            "target >= 0.9)",
            flush=True,
        )
        across = results["across_hosts"] = across_hosts(Path(tmp), args.seconds, args.rounds)
        print(
            f"(b) across hosts: over VXLAN {across['atoll_gbps']} Gbit/s, underlay "
            f"{across['baseline_gbps']} Gbit/s: ratio {across['ratio']} ({across['ratio_min']}-"
            f"{across['ratio_max']}; target >= 0.7)",
            flush=True,
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
