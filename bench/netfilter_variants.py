"""Where security groups could be enforced, and what each place costs per byte (an experiment).

Security groups are stateful, so they need conntrack. This kernel has no ``nf_conntrack_bridge`` (nor
``act_ct`` or flowtables), so bridged traffic is tracked only through ``br_netfilter``, which sends every
bridged packet through the IP hooks of the host's namespace; session 3 found it the largest single cost of
the tenant path. This benchmark measures, in ``bench/network.py``'s own topology (wired with the agent's
``HostNetwork`` and ``OverlayPlane``, a ``default`` group enforced as a real host does), the cost of every
variant against the bare path, alternating the order each round:

- ``today``: ``br_netfilter`` on; security groups in the host's ``inet`` table (what the agent does);
- ``today_notrack``: the same, with bridged packets between ports that are fully open to each other (both
  ways, any protocol: members of the ``default`` group) exempt from conntrack at the ``raw`` priority; the
  group's chains still judge them, statelessly, and accept them;
- ``brnf_off``: ``bridge-nf-call-iptables=0`` in the host namespace: the host keeps its stateless
  anti-spoofing (``bridge`` table) and isolation, but nothing enforces groups: the floor of any design
  that moves them off the bridge;
- ``instance``: ``brnf_off`` plus a stateful table in each instance's namespace (``input``/``output``:
  established and related accept, invalid drop, the group's rules), conntrack running there;
- ``instance_notrack``: the same, with traffic to and from fully open peers (the group's members) exempt
  from conntrack in the instance's namespace and accepted statelessly;
- ``instance_lean``: the fewest hooks the ``default`` group allows there: no ``output`` chain at all
  (its egress is open; conntrack still tracks what leaves, so replies are known), one ``input`` chain.

Everything is made in namespaces named ``atoll-bench-<hex>-...``, removed at the end; nothing leaves the
machine. Run as root: ``.venv/bin/python -m bench.netfilter_variants [--seconds 2] [--rounds 8]
[--only a|b]``. The last line is one JSON object with every figure (the median per variant).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from atoll.agent.net.dataplane import HostNetwork, NetConfig
from atoll.agent.net.names import BRIDGE
from atoll.agent.net.overlay import OverlayConfig, OverlayPlane
from atoll.model.instance import InstanceSpec
from atoll.model.overlay import VXLAN_OVERHEAD, OverlayNetwork, RemotePort
from bench.network import (
    NAMES,
    UNDERLAY_MTU,
    Run,
    default_policy,
    iperf,
    namespaces,
    netns_path,
    port,
    reported,
    spec,
    veth_between,
)

VARIANTS = ("today", "today_notrack", "brnf_off", "instance", "instance_notrack", "instance_lean")
EXTRA = f"{NAMES.table}_x"
"""The experiment's own tables (in the host and instance namespaces), apart from the agent's."""


def _nsenter(path: Path, *args: str, script: str | None = None) -> None:
    subprocess.run(
        ["nsenter", f"--net={path}", *args], input=script, text=True, capture_output=True, check=True
    )


def _drop_extra(path: Path) -> None:
    _nsenter(path, "nft", "-f", "-", script=f"table inet {EXTRA}\ndelete table inet {EXTRA}\n")


def host_notrack(members: str) -> str:
    """Bridged packets between two fully open ports skip conntrack; the group chains still judge them."""
    bridges = NAMES.wildcard(BRIDGE)
    return f"""table inet {EXTRA}
delete table inet {EXTRA}
table inet {EXTRA} {{
\tset open {{ type ipv4_addr; flags interval; elements = {{ {members} }} }}
\tchain raw {{
\t\ttype filter hook prerouting priority raw; policy accept;
\t\tiifname "{bridges}" ip saddr @open ip daddr @open notrack
\t}}
}}
"""


def instance_table(members: str, *, notrack: bool) -> str:
    """A port's ``default`` group, enforced inside its instance's namespace (conntrack there)."""
    raw = open_rules_in = open_rules_out = ""
    if notrack:
        raw = (
            "\tchain raw_in { type filter hook prerouting priority raw; policy accept; "
            "ip saddr @open notrack; }\n"
            "\tchain raw_out { type filter hook output priority raw; policy accept; "
            "ip daddr @open notrack; }\n"
        )
        open_rules_in, open_rules_out = "\t\tip saddr @open accept\n", "\t\tip daddr @open accept\n"
    return f"""table inet {EXTRA}
delete table inet {EXTRA}
table inet {EXTRA} {{
\tset open {{ type ipv4_addr; flags interval; elements = {{ {members} }} }}
{raw}\tchain input {{
\t\ttype filter hook input priority filter; policy drop;
\t\tiifname "lo" accept
{open_rules_in}\t\tct state established,related accept
\t\tct state invalid drop
\t\tip saddr @open accept
\t}}
\tchain output {{
\t\ttype filter hook output priority filter; policy drop;
\t\toifname "lo" accept
{open_rules_out}\t\tct state established,related accept
\t\tct state invalid drop
\t\taccept
\t}}
}}
"""


def instance_lean(members: str) -> str:
    """The ``default`` group with as few chains as it allows: egress is open, so only ``input``."""
    return f"""table inet {EXTRA}
delete table inet {EXTRA}
table inet {EXTRA} {{
\tset open {{ type ipv4_addr; elements = {{ {members} }} }}
\tchain input {{
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept
\t\tiifname "lo" accept
\t\tip saddr @open accept
\t}}
}}
"""


def setter(
    variant: str, hosts: Sequence[Path], instances: Sequence[Path], members: str
) -> Callable[[], None]:
    def apply() -> None:
        brnf = 0 if variant == "brnf_off" or variant.startswith("instance") else 1
        for host in hosts:
            _nsenter(host, "sysctl", "-qw", f"net.bridge.bridge-nf-call-iptables={brnf}")
            if variant == "today_notrack":
                _nsenter(host, "nft", "-f", "-", script=host_notrack(members))
            else:
                _drop_extra(host)
        for path in instances:
            if variant == "instance_lean":
                _nsenter(path, "nft", "-f", "-", script=instance_lean(members))
            elif variant.startswith("instance"):
                script = instance_table(members, notrack=variant == "instance_notrack")
                _nsenter(path, "nft", "-f", "-", script=script)
            else:
                _drop_extra(path)

    return apply


def measure(
    rounds: int,
    variants: Sequence[str],
    setters: dict[str, Callable[[], None]],
    ours: Callable[[], Run],
    baseline: Callable[[], Run],
) -> dict[str, Any]:
    runs: dict[str, list[Run]] = {v: [] for v in ("baseline", *variants)}
    for i in range(rounds):
        runs["baseline"].append(baseline())
        for variant in variants if i % 2 == 0 else list(reversed(variants)):
            setters[variant]()
            runs[variant].append(ours())
    base_cpu = statistics.median(r.cpu_ns_per_kb for r in runs["baseline"])
    base_gbps = statistics.median(r.gbps for r in runs["baseline"])
    out: dict[str, Any] = {}
    for name, got in runs.items():
        cpu = statistics.median(r.cpu_ns_per_kb for r in got)
        gbps = statistics.median(r.gbps for r in got)
        out[name] = {
            "gbps": round(gbps, 2),
            "cpu_ns_per_kb": round(cpu),
            "ratio": round(gbps / base_gbps, 3),
            "cost_ratio": round(base_cpu / cpu, 3),
        }
    return out


def one_host(tmp: Path, seconds: int, rounds: int, variants: Sequence[str]) -> dict[str, Any]:
    with namespaces("v1", "v2", "host") as (v1, v2, host):
        veth_between(v1, v2, "10.201.0.1", "10.201.0.2")
        net = HostNetwork(
            NetConfig(names=NAMES, netns_dir=tmp / "one", host_netns=netns_path(host), fast_path=False)
        )
        network = secrets.token_hex(32)
        a, b = spec(port(network, "10.202.0.2", 1500)), spec(port(network, "10.202.0.3", 1500))
        members = "10.202.0.2, 10.202.0.3"
        try:
            security = default_policy([a, b], ["10.202.0.2", "10.202.0.3"])
            for s in (a, b):
                asyncio.run(net.attach(s, security=security))
            inside = [net.netns_path(a.id), net.netns_path(b.id)]
            setters = {v: setter(v, [netns_path(host)], inside, members) for v in variants}
            return measure(
                rounds,
                variants,
                setters,
                lambda: iperf(inside[1], inside[0], "10.202.0.3", seconds),
                lambda: iperf(netns_path(v2), netns_path(v1), "10.201.0.2", seconds),
            )
        finally:
            for path in (net.netns_path(a.id), net.netns_path(b.id)):
                if path.exists():
                    _drop_extra(path)
            asyncio.run(HostNetwork(net.config).sync([]))


def across_hosts(tmp: Path, seconds: int, rounds: int, variants: Sequence[str]) -> dict[str, Any]:
    with namespaces("ha", "hb") as (ha, hb):
        underlay = ("10.203.0.1", "10.203.0.2")
        veth_between(ha, hb, *underlay)
        mtu = UNDERLAY_MTU - VXLAN_OVERHEAD
        network, vni = secrets.token_hex(32), 1 + secrets.randbelow((1 << 24) - 1)
        a, b = spec(port(network, "10.204.0.2", mtu)), spec(port(network, "10.204.0.3", mtu))
        members = ["10.204.0.2", "10.204.0.3"]
        hosts = []
        for name, address in zip((ha, hb), underlay, strict=True):
            net = HostNetwork(
                NetConfig(names=NAMES, netns_dir=tmp / name, host_netns=netns_path(name), fast_path=False)
            )
            overlay = OverlayPlane(OverlayConfig(NAMES, underlay_ip=address, host_netns=netns_path(name)))
            hosts.append((net, overlay, address))
        try:
            for (net, _, _), s in zip(hosts, (a, b), strict=True):
                asyncio.run(net.attach(s, security=default_policy([s], members)))
            for (_, overlay, _), (_, _, peer), other in zip(hosts, reversed(hosts), (b, a), strict=True):
                p = other.ports[0]
                remote = RemotePort(p.id, p.mac, p.ip, "peer", peer)
                asyncio.run(overlay.converge([OverlayNetwork(network, vni, mtu, [peer], [remote])]))
            inside = [hosts[0][0].netns_path(a.id), hosts[1][0].netns_path(b.id)]
            host_paths = [netns_path(ha), netns_path(hb)]
            setters = {v: setter(v, host_paths, inside, ", ".join(members)) for v in variants}
            return measure(
                rounds,
                variants,
                setters,
                lambda: iperf(inside[1], inside[0], "10.204.0.3", seconds),
                lambda: iperf(netns_path(hb), netns_path(ha), underlay[1], seconds),
            )
        finally:
            for path in inside_paths(hosts, (a, b)):
                _drop_extra(path)
            for net, overlay, _ in hosts:
                asyncio.run(HostNetwork(net.config).sync([]))
                asyncio.run(OverlayPlane(overlay.config).converge([]))


def inside_paths(
    hosts: Sequence[tuple[HostNetwork, OverlayPlane, str]], specs: Sequence[InstanceSpec]
) -> list[Path]:
    paths = [net.netns_path(s.id) for (net, _, _), s in zip(hosts, specs, strict=True)]
    return [p for p in paths if p.exists()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--only", choices=("a", "b"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"--variants: unknown {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    settings: dict[str, Any] = {"seconds": args.seconds, "rounds": args.rounds}
    with reported(settings) as results, tempfile.TemporaryDirectory(prefix="atoll-bench-variants-") as tmp:
        for key, label, fn in (("a", "one host", one_host), ("b", "across hosts", across_hosts)):
            if args.only in (None, key):
                got = results[key] = fn(Path(tmp), args.seconds, args.rounds, variants)
                for name, figures in got.items():
                    print(
                        f"({key}) {label:12} {name:17} {figures['gbps']:6.2f} Gbit/s "
                        f"ratio {figures['ratio']:.2f}  {figures['cpu_ns_per_kb']:4} ns/KiB "
                        f"cost ratio {figures['cost_ratio']:.2f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
