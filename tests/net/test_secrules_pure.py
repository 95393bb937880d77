"""The pure parts of security groups and publishing: the rules rendered for a policy, and the nft script."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from atoll.agent.net import nft, publish, secrules
from atoll.agent.net.names import Names
from atoll.model.errors import RuntimeFailure
from atoll.model.network import PortSpec
from atoll.model.publish import PublishedPort
from atoll.model.secgroups import Direction, GroupPolicy, HostSecurity, PortSecurity, Protocol, RuleSpec

NAMES = Names("at", "atoll")
NET = "1" * 64
G1, G2 = "a" * 64, "b" * 64


def nic(n: int) -> PortSpec:
    return PortSpec(
        id=f"{n:064x}", network_id=NET, mac=f"02:a7:00:00:00:{n:02x}", ip=f"10.0.0.{n}", prefix_len=24
    )


def test_rules_render_as_nft_matches() -> None:
    rules = [
        RuleSpec(Direction.EGRESS),
        RuleSpec(Direction.INGRESS, Protocol.TCP, 80, 90, remote_cidr="10.9.0.0/16"),
        RuleSpec(Direction.INGRESS, Protocol.UDP, 53, 53, remote_group=G2),
        RuleSpec(Direction.INGRESS, Protocol.ICMP, remote_cidr="0.0.0.0/0"),
        RuleSpec(Direction.EGRESS, Protocol.TCP, remote_group="c" * 64),  # unknown group: skipped
    ]
    policy = HostSecurity(
        ports=[PortSecurity(nic(2).id, NET, "10.0.0.2", nic(2).mac, [G1])],
        groups=[GroupPolicy(G1, rules), GroupPolicy(G2, [], ["10.0.0.7", "10.0.0.8"])],
    )
    out = secrules.render(NAMES, policy, {nic(2).id: nic(2)})
    inet = "\n".join(out.inet)
    assert "ip saddr 10.9.0.0/16 tcp dport 80-90 accept" in inet
    assert f"ip saddr @sgm_{G2[:16]} udp dport 53 accept" in inet
    assert "meta l4proto icmp accept" in inet
    assert "\t\treturn\n" in inet  # egress anywhere
    assert "c" * 16 not in inet
    assert "elements = { 10.0.0.7, 10.0.0.8 }" in inet
    assert f'"{NAMES.bridge(NET)}" . 10.0.0.2 : jump sgi_' in inet
    bridge = "\n".join(out.bridge)
    assert f'"{NAMES.veth(nic(2).id)}" . 02:a7:00:00:00:02 . 10.0.0.2' in bridge
    assert f'"{NAMES.veth(nic(2).id)}" . 02:a7:00:00:00:02 . 0.0.0.0' in bridge  # ARP probes


def test_ports_in_the_same_groups_share_chains_and_unknown_ports_get_nothing() -> None:
    ports = {p.id: p for p in (nic(2), nic(3), nic(4), nic(5))}
    policy = HostSecurity(
        ports=[PortSecurity(p.id, NET, p.ip, p.mac, [G1]) for p in (nic(2), nic(3), nic(4))],
        groups=[GroupPolicy(G1, [RuleSpec(Direction.INGRESS, Protocol.TCP, 22, 22)])],
    )
    inet = secrules.render(NAMES, policy, ports).inet
    chains = [line for line in inet if line.startswith("\tchain ")]
    assert len(chains) == 4  # G1's pair, and the empty pair of the port the policy does not know
    unknown = secrules._chain_id([])
    body = inet[inet.index(f"\tchain sgi_{unknown} {{") :][:3]
    assert body == [f"\tchain sgi_{unknown} {{", "\t\tdrop", "\t}"]


def test_the_script_with_security_and_publishing() -> None:
    rendered = secrules.render(NAMES, HostSecurity(), {})
    target = publish.Target("i" * 64, "169.254.240.1", (PublishedPort("tcp", 8080, 80, "127.0.0.1"),))
    script = nft.render(NAMES, {"atb-1": 1}, security=rendered, published=[target])
    assert 'iifname "atb-*" iifname . oifname @bridged jump tenant' in script
    assert "ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 169.254.240.1:80" in script
    assert 'oifname "atp-*" ct status dnat masquerade' in script
    assert "table bridge atoll {" in script
    # Tenant traffic is dropped before the publishing veths' accepts can see it.
    lines = script.splitlines()
    assert lines.index('\t\toifname "atv-*" drop') < lines.index('\t\toifname "atp-*" ct status dnat accept')
    plain = nft.render(NAMES, {"atb-1": 1})
    assert "table bridge atoll {" not in plain and "jump tenant" not in plain and "dnat ip to" not in plain


def test_publish_addresses_are_pairs_of_the_pool() -> None:
    pool = publish.Addresses(IPv4Network("169.254.240.0/29"))
    assert [str(pool.assign(i)) for i in "abcd"] == [
        "169.254.240.0",
        "169.254.240.2",
        "169.254.240.4",
        "169.254.240.6",
    ]
    assert str(pool.assign("b")) == "169.254.240.2"  # stable
    with pytest.raises(RuntimeFailure, match="exhausted"):
        pool.assign("e")
    pool.forget("c")
    assert str(pool.assign("e")) == "169.254.240.4"
    targets = pool.targets({"a": [PublishedPort("tcp", 1, 2)], "b": []})
    assert [(t.instance_id, t.address) for t in targets] == [("a", "169.254.240.1")]
