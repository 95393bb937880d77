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

With no bridge left, the tables are deleted.

Coexistence note: an accept here does not override another table's drop. If Docker's FORWARD chain
(policy drop) sees our bridged traffic through ``br_netfilter``, intra-network traffic needs a rule in
``DOCKER-USER``; see docs/networking.md.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable

from atoll.agent.net.names import BRIDGE, ROUTER, VETH, Names
from atoll.model.errors import RuntimeFailure

PRIORITY = "filter - 10"
"""Before the usual filter chains (iptables-nft's and firewalld's run at ``filter``)."""


def render(names: Names, bridges: Iterable[str]) -> str:
    """The ``nft -f`` script that makes our tables exactly this. Bridge names must be ours."""
    t = names.table
    ours = [names.wildcard(BRIDGE), names.wildcard(VETH), names.wildcard(ROUTER)]
    same = sorted(set(bridges))
    lines = [
        f"table inet {t}",
        f"delete table inet {t}",
        f"table arp {t}",
        f"delete table arp {t}",
        f"table inet {t} {{",
        '\tcomment "Atoll tenant networks: managed by the Atoll agent, rewritten as a whole"',
    ]
    if same:
        elements = ", ".join(f'"{b}" . "{b}"' for b in same)
        lines += ["\tset bridged {", "\t\ttype ifname . ifname", f"\t\telements = {{ {elements} }}", "\t}"]
    lines += ["\tchain forward {", f"\t\ttype filter hook forward priority {PRIORITY}; policy accept;"]
    if same:
        lines.append(f'\t\tiifname "{ours[0]}" iifname . oifname @bridged accept')
    for pattern in ours:
        lines += [f'\t\tiifname "{pattern}" drop', f'\t\toifname "{pattern}" drop']
    lines += ["\t}", "\tchain input {", f"\t\ttype filter hook input priority {PRIORITY}; policy accept;"]
    lines += [f'\t\tiifname "{pattern}" drop' for pattern in ours]
    lines += ["\t}", "}", f"table arp {t} {{", "\tchain input {"]
    lines.append(f"\t\ttype filter hook input priority {PRIORITY}; policy accept;")
    lines += [f'\t\tiifname "{pattern}" drop' for pattern in ours]
    lines += ["\t}", "}", ""]
    return "\n".join(lines)


def render_delete(names: Names) -> str:
    t = names.table
    return "\n".join(
        [f"table inet {t}", f"delete table inet {t}", f"table arp {t}", f"delete table arp {t}", ""]
    )


def _nft(args: list[str], script: str | None = None) -> str:
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


def listed(names: Names) -> str:
    """Our ``inet`` table as ``nft list`` prints it (for tests and ``atoll`` debugging)."""
    return _nft(["list", "table", "inet", names.table])
