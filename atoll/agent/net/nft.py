"""The dataplane's nftables rules: rendered from desired state (pure), applied atomically with ``nft -f``.

Atoll owns one table per family, named by the agent's settings (``atoll`` by default), and nothing
else: it never flushes the ruleset or touches another table, so it coexists with Docker, firewalld or
anything else. Each sync replaces the whole table in one transaction (declare, delete, define), so the
kernel never runs a half-written rule set.

What the rules say, today (bridges carry no address: a tenant network is layer 2 only, and the host is
not a hop on it):

- ``inet`` forward: traffic bridged within one tenant bridge passes (with ``br_netfilter`` loaded, the
  kernel shows such packets to the IP hooks with the bridge as both input and output device); any
  other packet from or to a tenant bridge or port is dropped, so the host never routes between tenant
  networks, nor from one to the outside, whatever ``ip_forward`` says. Routers will be namespaces
  with their own ports on the bridges, so joining networks never needs the host to forward.
- ``inet`` input and ``arp`` input: nothing from a tenant network reaches the host itself (its
  services, its addresses on other interfaces).
- ``inet`` zones (prerouting, before conntrack): a packet bridged by one of our bridges is tracked in
  that bridge's conntrack zone (``zones``), so two networks' flows never share an entry.

With no bridge left, the tables are deleted.

Coexistence note: an accept here does not override another table's drop. If Docker's FORWARD chain
(policy drop) sees our bridged traffic through ``br_netfilter``, intra-network traffic needs a rule in
``DOCKER-USER``; see docs/networking.md.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence

from atoll.agent.net import libnft, publish, secrules
from atoll.agent.net.names import BRIDGE, PUBLISH, ROUTER, VETH, Names
from atoll.model.errors import RuntimeFailure

PRIORITY = "filter - 10"
"""Before the usual filter chains (iptables-nft's and firewalld's run at ``filter``)."""


def render(
    names: Names,
    bridges: Mapping[str, int],
    *,
    security: secrules.Rendered | None = None,
    published: Sequence[publish.Target] = (),
) -> str:
    """The ``nft -f`` script that makes our tables exactly this. ``bridges``: our bridges' names and
    their conntrack zones (``zones``).

    ``security``: the rules of security groups (None: traffic within a bridge is not filtered, for a
    dataplane run without a controller). ``published``: the instances' published ports."""
    t = names.table
    ours = [names.wildcard(BRIDGE), names.wildcard(VETH), names.wildcard(ROUTER), names.wildcard(PUBLISH)]
    pub = names.wildcard(PUBLISH)
    same = sorted(set(bridges))
    lines = [
        f"table inet {t}",
        f"delete table inet {t}",
        f"table arp {t}",
        f"delete table arp {t}",
        f"table bridge {t}",
        f"delete table bridge {t}",
        f"table inet {t} {{",
        '\tcomment "Atoll tenant networks: managed by the Atoll agent, rewritten as a whole"',
    ]
    if same:
        elements = ", ".join(f'"{b}" . "{b}"' for b in same)
        lines += ["\tset bridged {", "\t\ttype ifname . ifname", f"\t\telements = {{ {elements} }}", "\t}"]
        numbers = ", ".join(f'"{b}" : {bridges[b]}' for b in same)
        lines += [
            "\tmap ct_zones {",
            "\t\ttypeof iifname : ct zone",
            f"\t\telements = {{ {numbers} }}",
            "\t}",
        ]
    if security is not None:
        lines += security.inet
        lines += ["\tchain tenant {", *(f"\t\t{rule}" for rule in security.tenant), "\t}"]
    if same:  # before conntrack (priority raw): a bridged packet's flow is looked up in its bridge's zone
        lines += ["\tchain zones {", "\t\ttype filter hook prerouting priority raw; policy accept;"]
        lines += [f'\t\tiifname "{ours[0]}" ct zone set iifname map @ct_zones', "\t}"]
    lines += ["\tchain forward {", f"\t\ttype filter hook forward priority {PRIORITY}; policy accept;"]
    if same:
        verdict = "jump tenant" if security is not None else "accept"
        lines.append(f'\t\tiifname "{ours[0]}" iifname . oifname @bridged {verdict}')
    for pattern in ours[:3]:  # tenant links: bridges, instance veths, router legs
        lines += [f'\t\tiifname "{pattern}" drop', f'\t\toifname "{pattern}" drop']
    # Publishing veths: only DNATed connections in, only their replies out (tenant traffic is gone by now).
    lines += [
        f'\t\toifname "{pub}" ct status dnat accept',
        f'\t\tiifname "{pub}" ct state established,related accept',
        f'\t\tiifname "{pub}" drop',
        f'\t\toifname "{pub}" drop',
    ]
    lines += ["\t}", "\tchain input {", f"\t\ttype filter hook input priority {PRIORITY}; policy accept;"]
    lines.append(f'\t\tiifname "{pub}" ct state established,related accept')
    lines += [f'\t\tiifname "{pattern}" drop' for pattern in ours]
    lines.append("\t}")
    if published:
        lines += _publish_chains(pub, published)
    lines += ["}", f"table arp {t} {{", "\tchain input {"]
    lines.append(f"\t\ttype filter hook input priority {PRIORITY}; policy accept;")
    lines += [f'\t\tiifname "{pattern}" drop' for pattern in ours[:3]]
    lines += ["\t}", "}"]
    if security is not None:
        lines += [f"table bridge {t} {{", *security.bridge, "}"]
    lines.append("")
    return "\n".join(lines)


def _publish_chains(pub: str, published: Sequence[publish.Target]) -> list[str]:
    """DNAT from host ports to the instance ends of publishing veths; masquerade so replies return."""
    rules = []
    for target in published:
        for port in target.ports:
            where = f"ip daddr {port.host_ip} " if port.host_ip else ""
            rules.append(
                f"\t\t{where}{port.protocol} dport {port.host_port} "
                f"dnat ip to {target.address}:{port.container_port}"
            )
    return [
        "\tchain publish {",
        *rules,
        "\t}",
        "\tchain publish_prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        "\t\tfib daddr type local jump publish",
        "\t}",
        "\tchain publish_output {",
        "\t\ttype nat hook output priority -100; policy accept;",
        "\t\tfib daddr type local jump publish",
        "\t}",
        # Replies of open flows pass a publishing veth, so its source must be its own instance's
        # address: another instance must not answer for it (strict reverse path: the route back to the
        # source leaves by the veth the packet came in by).
        "\tchain publish_source {",
        "\t\ttype filter hook prerouting priority raw; policy accept;",
        f'\t\tiifname "{pub}" fib saddr . iif oif missing drop',
        "\t}",
        "\tchain publish_postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        f'\t\toifname "{pub}" ct status dnat masquerade',
        "\t}",
    ]


def render_delete(names: Names) -> str:
    t = names.table
    lines = []
    for family in ("inet", "arp", "bridge"):
        lines += [f"table {family} {t}", f"delete table {family} {t}"]
    return "\n".join([*lines, ""])


def _nft(args: list[str], script: str | None = None) -> str:
    if libnft.available:  # in-process: no nft process per call (see libnft)
        as_json = args[:1] == ["-j"]
        commands = script if args == ["-f", "-"] else " ".join(args[1:] if as_json else args)
        result = libnft.run(commands or "", json=as_json)
        if not result.ok:
            raise RuntimeFailure(f"nft {' '.join(args)}: {result.error.strip()}")
        return result.output
    try:
        done = subprocess.run(["nft", *args], input=script, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as exc:
        raise RuntimeFailure("nft is not installed (Debian package nftables)") from exc
    if done.returncode != 0:
        raise RuntimeFailure(f"nft {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def apply(script: str) -> None:
    """Run an ``nft -f`` script: all of it, or (on any error) none of it."""
    _nft(["-f", "-"], script)


def tables() -> set[tuple[str, str]]:
    """(family, name) of every nftables table in the calling thread's network namespace."""
    out = json.loads(_nft(["-j", "list", "tables"]))
    return {
        (item["table"]["family"], item["table"]["name"])
        for item in out.get("nftables", [])
        if "table" in item
    }


def zones(names: Names) -> dict[str, int]:
    """The conntrack zones of our bridges as our table holds them (an earlier agent's), or none."""
    try:
        out = json.loads(_nft(["-j", "list", "map", "inet", names.table, "ct_zones"]))
    except RuntimeFailure:
        return {}  # no table, or one without the map (written by an agent from before zones)
    found: dict[str, int] = {}
    for item in out.get("nftables", []):
        for bridge, zone in item.get("map", {}).get("elem", []):
            if isinstance(bridge, str) and isinstance(zone, int):
                found[bridge] = zone
    return found


def listed(names: Names) -> str:
    """Our ``inet`` table as ``nft list`` prints it (for tests and ``atoll`` debugging)."""
    return _nft(["list", "table", "inet", names.table])
