"""The pure parts of the dataplane: names, the nftables script, the OCI config and /etc files of an
instance with ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from atoll.agent.etcfiles import write_etc_files
from atoll.agent.net import nft
from atoll.agent.net.names import BRIDGE, VETH, Names, alias_id, bridge_alias, veth_alias
from atoll.agent.net.zones import Zones
from atoll.agent.runtime.cgroups import HostCgroups
from atoll.agent.runtime.oci import build_config
from atoll.agent.runtime.users import ResolvedUser
from atoll.model.errors import InvalidInput
from atoll.model.instance import InstanceSpec, ProcessSpec

ID = "0123456789abcdef" * 4


def test_names_fit_the_kernel_and_are_recognised() -> None:
    names = Names("abcde", "t")
    assert names.bridge(ID) == "abcdeb-01234567" and len(names.bridge(ID)) == 15
    assert names.veth(ID) == "abcdev-01234567"
    assert names.kind_of("abcdeb-01234567") == BRIDGE
    assert names.kind_of("abcdev-01234567") == VETH
    for other in ("abcdeb-0123", "abcdex-01234567", "eth0", "abcdeb-012345678"):
        assert names.kind_of(other) is None
    assert Names().bridge(ID) == "atb-01234567"
    assert alias_id(bridge_alias(ID)) == ID and alias_id(veth_alias(ID, "x")) == ID
    assert alias_id("") == "" and alias_id("docker0 bridge") == ""


@pytest.mark.parametrize(("prefix", "table"), [("", "t"), ("abcdef", "t"), ("A", "t"), ("at", "a table")])
def test_bad_names_are_refused(prefix: str, table: str) -> None:
    with pytest.raises(InvalidInput):
        Names(prefix, table)


def test_rules_script() -> None:
    names = Names("at", "atoll")
    script = nft.render(names, {"atb-2": 7, "atb-1": 3})
    # Declare, delete, define: one atomic replacement that also works when the tables do not exist yet.
    assert script.splitlines()[:6] == [
        "table inet atoll",
        "delete table inet atoll",
        "table arp atoll",
        "delete table arp atoll",
        "table bridge atoll",
        "delete table bridge atoll",
    ]
    assert 'elements = { "atb-1" . "atb-1", "atb-2" . "atb-2" }' in script
    # Each bridge's flows in its own conntrack zone, set before conntrack sees them.
    assert 'elements = { "atb-1" : 3, "atb-2" : 7 }' in script
    assert 'iifname "atb-*" ct zone set iifname map @ct_zones' in script
    assert "type filter hook prerouting priority raw; policy accept;" in script
    assert 'iifname "atb-*" iifname . oifname @bridged accept' in script
    for rule in (
        'iifname "atb-*" drop',
        'oifname "atb-*" drop',
        'iifname "atv-*" drop',
        'oifname "atv-*" drop',
    ):
        assert rule in script
    assert "flush ruleset" not in script
    assert nft.render_delete(names).splitlines() == script.splitlines()[:6]


def spec_with_port() -> InstanceSpec:
    return InstanceSpec(
        id=ID, name="web", project="p", image_id="", layers=[], process=ProcessSpec(args=["sh"])
    )


def test_the_runtime_joins_the_agents_namespace() -> None:
    def namespaces(netns: Path | None) -> list[dict[str, str]]:
        config = build_config(
            spec_with_port(),
            rootfs=Path("/r"),
            init_binary=Path("/i"),
            user=ResolvedUser(0, 0, [], "/root"),
            cgroups_path="/atoll/x",
            host=HostCgroups(version=2, swap_accounting=True),
            netns=netns,
        )
        result: list[dict[str, str]] = config["linux"]["namespaces"]
        return result

    assert {"type": "network"} in namespaces(None)
    assert {"type": "network", "path": "/run/atoll/netns/x"} in namespaces(Path("/run/atoll/netns/x"))


def test_etc_files_of_an_instance_with_ports(tmp_path: Path) -> None:
    write_etc_files(tmp_path, "web", addresses=["10.0.0.2"], nameservers=["10.0.0.53", "9.9.9.9"])
    assert (tmp_path / "hosts").read_text().splitlines()[-1] == "10.0.0.2\tweb"
    assert "127.0.1.1" not in (tmp_path / "hosts").read_text()
    assert (tmp_path / "resolv.conf").read_text() == "nameserver 10.0.0.53\nnameserver 9.9.9.9\n"
    write_etc_files(tmp_path, "web")
    assert (tmp_path / "hosts").read_text().splitlines()[-1] == "127.0.1.1\tweb"


def test_conntrack_zones_stay_put_while_their_bridge_lives() -> None:
    zones = Zones()
    assert zones.assign(["atb-c", "atb-a", "atb-b"]) == {"atb-a": 1, "atb-b": 2, "atb-c": 3}
    assert zones.assign(["atb-a", "atb-c", "atb-d"]) == {"atb-a": 1, "atb-c": 3, "atb-d": 2}  # b's freed
    assert zones.get("atb-b") is None and zones.get("atb-d") == 2
    # A new agent takes its predecessor's numbers from the kernel; what it cannot use, it numbers anew.
    fresh = Zones()
    fresh.adopt({"atb-a": 1, "atb-c": 3, "atb-x": 0, "atb-y": 3})
    assert fresh.adopted
    assert fresh.assign(["atb-a", "atb-c", "atb-y"]) == {"atb-a": 1, "atb-c": 3, "atb-y": 2}
