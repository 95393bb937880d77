"""The plain rtnetlink link dump (agent/net/linkdump.py) reads what pyroute2 reads: index, name, kind,
master, alias, MAC, MTU and flags, for every link of the calling thread's namespace."""

from __future__ import annotations

import subprocess
import sys

from pyroute2 import IPRoute

from atoll.agent.net import linkdump, netns
from tests.prefix import NET_PREFIX

from .helpers import Host


def _pyroute2_view() -> dict[str, tuple[object, ...]]:
    with IPRoute() as ipr:
        out: dict[str, tuple[object, ...]] = {}
        for msg in ipr.get_links():
            info = msg.get_attr("IFLA_LINKINFO")
            out[msg.get_attr("IFLA_IFNAME")] = (
                msg["index"],
                (info.get_attr("IFLA_INFO_KIND") if info else None) or "",
                msg.get_attr("IFLA_MASTER") or 0,
                msg.get_attr("IFLA_IFALIAS") or "",
                msg.get_attr("IFLA_ADDRESS") or "",
                msg.get_attr("IFLA_MTU"),
                msg["flags"],
            )
        return out


def test_dump_matches_pyroute2(host: Host) -> None:
    br, a, b = f"{NET_PREFIX}dbr", f"{NET_PREFIX}dva", f"{NET_PREFIX}dvb"
    host.run("ip", "link", "add", br, "type", "bridge")
    host.run("ip", "link", "add", a, "mtu", "1400", "type", "veth", "peer", "name", b)
    host.run("ip", "link", "set", a, "master", br, "alias", "atoll port 1234", "up")
    host.run("ip", "link", "set", "lo", "up")

    links = netns.run_in(host.path, linkdump.dump)
    expected = netns.run_in(host.path, _pyroute2_view)

    assert {link.name for link in links} == set(expected) == {"lo", br, a, b}
    for link in links:
        assert (link.index, link.kind, link.master, link.alias, link.mac, link.mtu, link.flags) == expected[
            link.name
        ], link.name
    by_name = {link.name: link for link in links}
    assert by_name[a].master == by_name[br].index
    assert by_name[a].kind == "veth" and by_name[br].kind == "bridge" and by_name["lo"].kind == ""
    assert by_name[a].mtu == 1400 and by_name[a].alias == "atoll port 1234"


_COUNT_GARBAGE = """
import gc, sys
from atoll.agent.net import linkdump, netns
gc.collect()
gc.disable()
netns.run_in(sys.argv[1], linkdump.dump)
print(gc.collect())
"""


def test_dump_leaves_no_garbage_cycles(host: Host) -> None:
    for i in range(10):
        host.run(
            "ip", "link", "add", f"{NET_PREFIX}g{i}", "type", "veth", "peer", "name", f"{NET_PREFIX}h{i}"
        )
    # A fresh interpreter: in the test process, other tests' threads make garbage of their own while the
    # collector is off, and gc.collect() counts theirs too.
    out = subprocess.run(
        [sys.executable, "-c", _COUNT_GARBAGE, str(host.path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "0"  # what the dump made went with its last reference
