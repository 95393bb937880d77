"""Incremental rule changes (atoll/agent/net/nftdiff.py) on a real kernel: after any sequence of
changes, our tables list exactly as if each state had been loaded whole; and the change really is
element-wise (not a disguised whole reload) when a port joins or leaves."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from atoll.agent.net import netns, nft, nftdiff, secrules
from atoll.agent.net.names import Names
from atoll.model.network import PortSpec
from atoll.model.secgroups import Direction, GroupPolicy, HostSecurity, PortSecurity, Protocol, RuleSpec

from .helpers import Host, new_id, port

NET_A, NET_B = new_id(), new_id()
WEB, DB = new_id(), new_id()


def render(names: Names, ports: Sequence[PortSpec], groups: dict[str, list[str]], db_port: int = 5432) -> str:
    """The rule set for these ports; ``groups``: port id -> its groups."""
    rules = {
        WEB: [RuleSpec(Direction.EGRESS), RuleSpec(Direction.INGRESS, Protocol.TCP, 80, 80)],
        DB: [RuleSpec(Direction.INGRESS, Protocol.TCP, db_port, db_port, remote_group=WEB)],
    }
    members = {g: sorted(p.ip for p in ports if g in groups.get(p.id, [])) for g in rules}
    policy = HostSecurity(
        ports=[PortSecurity(p.id, p.network_id, p.ip, p.mac, groups.get(p.id, [])) for p in ports],
        groups=[GroupPolicy(g, rules[g], members[g]) for g in rules],
    )
    bridges = {b: zone for zone, b in enumerate(sorted({names.bridge(p.network_id) for p in ports}), 1)}
    by_id = {p.id: p for p in ports}
    return nft.render(names, bridges, security=secrules.render(names, policy, by_id))


def _plain(value: Any) -> Any:
    """Without handles (they count the kernel's objects), elements sorted (the kernel lists them in
    its own order)."""
    if isinstance(value, dict):
        return {
            k: sorted(map(_plain, v), key=json.dumps) if k == "elem" else _plain(v)
            for k, v in value.items()
            if k != "handle"
        }
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _grouped(items: list[Any]) -> list[Any]:
    """Chains in name order (the kernel lists them in the order they were made); rules keep their
    order within their chain (a stable sort)."""

    def key(item: dict[str, Any]) -> tuple[str, str]:
        kind, body = next(iter(item.items()))
        return kind, body.get("chain", body.get("name", ""))

    return sorted(items, key=key)


def listing(host: Host, names: Names) -> Any:
    """Our tables as the kernel has them, as comparable data."""
    tables = [
        host.run("nft", "-j", "list", "table", f, names.table).stdout for f in ("inet", "arp", "bridge")
    ]
    return [_grouped(_plain(json.loads(t)["nftables"])) for t in tables]


def test_changes_list_as_whole_loads(host: Host, names: Names) -> None:
    a1, a2, a3 = (port(NET_A, f"10.0.0.{i}") for i in (2, 3, 4))
    b1 = port(NET_B, "10.0.0.2")  # the same address on another network
    states = [
        ([a1], {a1.id: [WEB]}),
        ([a1, a2], {a1.id: [WEB], a2.id: [WEB]}),  # a port joins: elements only
        ([a1, a2, a3], {a1.id: [WEB], a2.id: [WEB], a3.id: [DB]}),  # new groups: new chains
        ([a1, a3, b1], {a1.id: [WEB], a3.id: [DB], b1.id: [WEB, DB]}),  # leave, new bridge, more chains
        ([a3, b1], {a3.id: [WEB], b1.id: [WEB, DB]}),  # a port changes groups: a map verdict changes
        ([b1], {b1.id: [WEB, DB]}),  # chains go
    ]
    scripts = [render(names, p, g) for p, g in states]
    try:
        previous = None
        for script in scripts:
            if previous is not None:
                assert nftdiff.change(previous, script), "expected an element-wise change"
            netns.run_in(host.path, lambda s=script, p=previous: nftdiff.apply(p, s))  # type: ignore[misc]
            incremental = listing(host, names)
            netns.run_in(host.path, lambda s=script: nft.apply(s))  # type: ignore[misc]
            assert incremental == listing(host, names)
            previous = script
    finally:
        netns.run_in(host.path, lambda: nft.apply(nft.render_delete(names)))


def test_what_is_not_elements_is_loaded_whole(names: Names) -> None:
    a1 = port(NET_A, "10.0.0.2")
    before = render(names, [a1], {a1.id: [WEB, DB]})
    after = render(names, [a1], {a1.id: [WEB, DB]}, db_port=5433)  # a rule of an existing chain
    assert nftdiff.change(before, after) is None
    assert nftdiff.change(before, before) == ""
    assert (
        nftdiff.change(before, nft.render(names, {names.bridge(NET_A): 1})) is None
    )  # no security: tables differ


def test_a_failed_change_falls_back_to_the_whole_script(host: Host, names: Names) -> None:
    a1, a2 = port(NET_A, "10.0.0.2"), port(NET_A, "10.0.0.3")
    old = render(names, [a1], {a1.id: [WEB]})
    new = render(names, [a1, a2], {a1.id: [WEB], a2.id: [WEB]})
    try:
        netns.run_in(host.path, lambda: nft.apply(render(names, [a2], {a2.id: [DB]})))  # not `old`
        netns.run_in(host.path, lambda: nftdiff.apply(old, new))
        got = listing(host, names)
        netns.run_in(host.path, lambda: nft.apply(new))
        assert got == listing(host, names)
    finally:
        netns.run_in(host.path, lambda: nft.apply(nft.render_delete(names)))
