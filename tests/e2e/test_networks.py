"""Tenant networking end to end: `atoll up` in a subprocess, driven through the CLI and the SDK.

Traffic only ever goes between instances' namespaces on the test's own bridges; tenant networks have no
way out of the host (there are no routers yet), so nothing reaches the machine's uplink.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path

import pytest

from atoll.agent.net import bigtcp
from atoll.client import AtollAPI, AtollError
from atoll.schemas import InstanceCreate, InstanceNetwork, NetworkCreate, SubnetSpec
from tests.e2e.cloud import Cloud
from tests.e2e.helpers import wait_for


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def run_on(cloud: Cloud, name: str, *networks: str, project: str = "default") -> str:
    """A detached busybox on ``networks`` (each NET or name=NET,ip=...); returns its address on the first."""
    args = ["--project", project, "run", "-d", "--name", name]
    for net in networks:
        args += ["--network", net]
    ok(cloud.cli(*args, "busybox", "sleep", "3600"))
    inst = cloud.api(project).inspect_instance(name)
    assert inst.status == "running"
    return inst.networks[0].ip


def pings(cloud: Cloud, name: str, address: str, project: str = "default") -> bool:
    result = cloud.cli("--project", project, "exec", name, "ping", "-c", "1", "-W", "2", address)
    return result.returncode == 0


def links(cloud: Cloud) -> set[str]:
    return {n for n in os.listdir("/sys/class/net") if n.startswith(cloud.net_prefix)}


def uplink_mtu() -> int:
    """The MTU of the interface the default route leaves by (this machine's underlay)."""
    route = subprocess.run(
        ["ip", "-4", "route", "show", "default"], capture_output=True, text=True
    ).stdout.split()
    if "dev" not in route:
        return 1500
    return int(Path(f"/sys/class/net/{route[route.index('dev') + 1]}/mtu").read_text())


@pytest.fixture
def api(cloud: Cloud) -> AtollAPI:
    return cloud.api()


def test_two_instances_on_one_network_talk(cloud: Cloud, api: AtollAPI) -> None:
    before = links(cloud)
    ok(cloud.cli("network", "create", "front", "--subnet", "10.77.0.0/24", "--dns", "10.77.0.53"))
    ip_a = run_on(cloud, "front-a", "front")
    ip_b = run_on(cloud, "front-b", "front")
    assert (ip_a, ip_b) == ("10.77.0.2", "10.77.0.3")
    assert pings(cloud, "front-a", ip_b)
    assert pings(cloud, "front-b", ip_a)
    nic = api.inspect_instance("front-a").networks[0]
    inside = ok(cloud.cli("exec", "front-a", "ip", "addr", "show", "eth0"))
    assert f"inet {ip_a}/24" in inside and nic.mac in inside
    assert f"{ip_a}\t" in ok(cloud.cli("exec", "front-a", "cat", "/etc/hosts"))
    # The agent's resolver answers names; the subnet's server (10.77.0.53) is its upstream.
    assert ok(cloud.cli("exec", "front-a", "cat", "/etc/resolv.conf")) == "nameserver 127.0.0.11\n"
    assert "default via 10.77.0.1 dev eth0" in ok(cloud.cli("exec", "front-a", "ip", "route"))
    # One bridge and two veths, named with the cloud's prefix. The network is an overlay (the default
    # type), but with no port on another host it has no VXLAN device: nothing can leave the machine.
    made = links(cloud) - before
    assert not [n for n in made if n.startswith(f"{cloud.net_prefix}x-")]
    assert len(made) == 3
    if bigtcp.probe():  # BIG TCP (ATOLL_BIG_TCP=auto): the NIC and its host-side veth take 192 KiB packets
        netns = cloud.base / "run" / "netns" / api.inspect_instance("front-a").id
        nic_shown = subprocess.run(
            ["nsenter", f"--net={netns}", "ip", "-d", "link", "show", "eth0"], capture_output=True, text=True
        )
        assert f"gso_max_size {bigtcp.DEFAULT} " in nic_shown.stdout, nic_shown.stdout + nic_shown.stderr
        for veth in (n for n in made if n.startswith(f"{cloud.net_prefix}v-")):
            shown = subprocess.run(["ip", "-d", "link", "show", veth], capture_output=True, text=True).stdout
            assert f"gso_max_size {bigtcp.DEFAULT} " in shown, shown
    assert api.inspect_network("front").mtu == uplink_mtu() - 50  # found by the agent, minus VXLAN's header
    ports = ok(cloud.cli("port", "ls", "--network", "front"))
    assert ip_a in ports and ip_b in ports
    assert sends_tcp(cloud, "front-a", "front-b", ip_b)  # on the fast path (tests/net/test_fastpath.py)
    assert all(fast_path_on(veth) for veth in made if veth.startswith(f"{cloud.net_prefix}v-"))
    for name in ("front-a", "front-b"):
        ok(cloud.cli("rm", "-f", name))
    ok(cloud.cli("network", "rm", "front"))
    wait_for(lambda: not (links(cloud) & made), 10, "links gone")  # deleted in the background


def test_different_networks_cannot_reach_each_other(cloud: Cloud) -> None:
    ok(cloud.cli("network", "create", "left", "--subnet", "10.81.0.0/24"))
    ok(cloud.cli("network", "create", "right", "--subnet", "10.82.0.0/24"))
    ok(cloud.cli("network", "create", "both", "--subnet", "10.83.0.0/24"))
    left = run_on(cloud, "iso-left", "left", "both")
    right = run_on(cloud, "iso-right", "right", "both")
    assert not pings(cloud, "iso-left", right)
    assert not pings(cloud, "iso-right", left)
    # Where they do share a network, they talk, over it.
    both = cloud.api().inspect_instance("iso-right").networks[1]
    assert both.device == "eth1" and pings(cloud, "iso-left", both.ip)
    for name in ("iso-left", "iso-right"):
        ok(cloud.cli("rm", "-f", name))


def test_two_projects_with_the_same_cidr_are_isolated(cloud: Cloud) -> None:
    for project in ("blue", "green"):
        ok(cloud.cli("project", "create", project))
        ok(cloud.cli("--project", project, "network", "create", "net", "--subnet", "10.90.0.0/24"))
    blue_a = run_on(cloud, "a", "net", project="blue")  # 10.90.0.2
    blue_b = run_on(cloud, "b", "net", project="blue")  # 10.90.0.3
    green_a = run_on(cloud, "a", "net", project="green")  # 10.90.0.2, again
    green_c = run_on(cloud, "c", "name=net,ip=10.90.0.4", project="green")
    assert blue_a == green_a == "10.90.0.2" and (blue_b, green_c) == ("10.90.0.3", "10.90.0.4")
    assert pings(cloud, "a", blue_b, project="blue")
    assert pings(cloud, "a", green_c, project="green")
    assert not pings(cloud, "a", green_c, project="blue")  # 10.90.0.4 exists only in green
    assert not pings(cloud, "a", blue_b, project="green")  # 10.90.0.3 exists only in blue
    # Each project sees only its own network.
    blue = cloud.api("blue")
    assert [n.name for n in blue.networks()] == ["net"]
    green_net = cloud.api("green").inspect_network("net")
    with pytest.raises(AtollError, match="not found"):
        blue.inspect_network(green_net.id)


def test_stop_start_keeps_address_and_mac(cloud: Cloud, api: AtollAPI) -> None:
    ok(cloud.cli("network", "create", "keep", "--subnet", "10.84.0.0/24"))
    peer = run_on(cloud, "keep-peer", "keep")
    run_on(cloud, "keep-me", "keep")
    before = api.inspect_instance("keep-me").networks
    ok(cloud.cli("stop", "-t", "1", "keep-me"))
    ok(cloud.cli("start", "keep-me"))
    assert api.inspect_instance("keep-me").networks == before
    inside = ok(cloud.cli("exec", "keep-me", "ip", "addr", "show", "eth0"))
    assert f"inet {before[0].ip}/24" in inside and before[0].mac in inside
    assert pings(cloud, "keep-me", peer)
    for name in ("keep-me", "keep-peer"):
        ok(cloud.cli("rm", "-f", name))


def test_rm_frees_the_address_and_the_links(cloud: Cloud, api: AtollAPI) -> None:
    api.create_network(NetworkCreate(name="reuse", subnets=[SubnetSpec(cidr="10.85.0.0/29")]))
    before = links(cloud)
    want = [InstanceNetwork(network="reuse", ip="10.85.0.5")]
    first = api.create_instance(InstanceCreate(image="busybox", command=["sleep", "3600"], networks=want))
    api.start_instance(first.id)
    made = links(cloud) - before
    assert len(made) == 2  # the bridge and the port's veth (no VXLAN device without a peer host)
    netns = cloud.base / "run" / "netns" / first.id
    assert netns.exists()
    api.remove_instance(first.id, force=True)
    # The links and the namespace are deleted in the background, right after the answer (and an
    # earlier test's may still be going: only these are looked at).
    wait_for(lambda: not (links(cloud) & made) and not netns.exists(), 10, "links and namespace gone")
    second = api.create_instance(InstanceCreate(image="busybox", command=["true"], networks=want))
    assert second.networks[0].ip == "10.85.0.5"
    api.remove_instance(second.id, force=True)
    api.remove_network("reuse")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["network", "create", "bad", "--subnet", "10.0.0.0/33"],
            "subnets[0].cidr: '10.0.0.0/33' is not a CIDR",
        ),
        (
            ["network", "create", "bad", "--subnet", "10.86.0.0/24", "--gateway", "10.99.0.1"],
            "subnets[0].gateway: the gateway 10.99.0.1 is outside the subnet 10.86.0.0/24",
        ),
        (["network", "create", "bad", "--type", "flat"], "type: 'flat' networks are not supported yet"),
        (
            ["run", "-d", "--network", "valid", "--ip", "10.87.0.200", "busybox", "true"],
            "networks[0].ip: 10.87.0.200 is not inside an allocation pool of 10.87.0.0/24 (10.87.0.2-",
        ),
        (
            ["run", "-d", "--network", "valid", "--ip", "10.87.0.9", "busybox", "true"],
            "networks[0].ip: 10.87.0.9 is already",
        ),
        (
            ["run", "-d", "--network", "nope", "busybox", "true"],
            "networks[0].network: network 'nope' not found",
        ),
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(cloud: Cloud, args: list[str], message: str) -> None:
    api = cloud.api()
    if not any(n.name == "valid" for n in api.networks()):
        ok(
            cloud.cli(
                "network", "create", "valid", "--subnet", "10.87.0.0/24", "--ip-range", "10.87.0.2-10.87.0.99"
            )
        )
        run_on(cloud, "holder", "name=valid,ip=10.87.0.9")
    state = (
        [n.model_dump() for n in api.networks()],
        sorted(i.id for i in api.instances(all=True)),
        links(cloud),
    )
    result = cloud.cli(*args)
    assert result.returncode in (1, 125), result
    assert message in result.stderr.decode(), result.stderr.decode()
    assert state == (
        [n.model_dump() for n in api.networks()],
        sorted(i.id for i in api.instances(all=True)),
        links(cloud),
    )


def test_networks_in_use_stay(cloud: Cloud) -> None:
    ok(cloud.cli("network", "create", "busy", "--subnet", "10.88.0.0/24"))
    run_on(cloud, "busy-1", "busy")
    result = cloud.cli("network", "rm", "busy")
    assert result.returncode == 1 and "in use by instance(s)" in result.stderr.decode()
    ok(cloud.cli("rm", "-f", "busy-1"))
    ok(cloud.cli("network", "rm", "busy"))
    result = cloud.cli("network", "inspect", "busy")
    assert result.returncode == 1 and json.loads(result.stdout) == []


def test_an_agent_restart_keeps_traffic_and_removes_leftovers(fresh_cloud: Cloud) -> None:
    cloud = fresh_cloud
    ok(cloud.cli("network", "create", "stay", "--subnet", "10.89.0.0/24"))
    run_on(cloud, "stay-a", "stay")
    ip_b = run_on(cloud, "stay-b", "stay")
    kept = links(cloud)
    cloud.kill9()
    stray = f"{cloud.net_prefix}v-deadbeef"  # a port's veth whose instance is gone
    subprocess.run(
        ["ip", "link", "add", stray, "type", "veth", "peer", "name", f"{cloud.net_prefix}-peer"], check=True
    )
    cloud.start()
    wait_for(lambda: stray not in links(cloud), what="the stray link to be removed")
    assert links(cloud) == kept
    assert pings(cloud, "stay-a", ip_b)
    assert sends_tcp(cloud, "stay-a", "stay-b", ip_b)
    # The agent started again put its own fast path on every veth, in place of its predecessor's.
    for veth in (n for n in links(cloud) if n.startswith(f"{cloud.net_prefix}v-")):
        assert fast_path_on(veth), veth


def sends_tcp(cloud: Cloud, client: str, server: str, address: str, size_kb: int = 4096) -> bool:
    """``size_kb`` KiB over one TCP connection (busybox httpd and wget), counted on arrival."""
    page = f"dd if=/dev/zero of=/tmp/www/big bs=1024 count={size_kb}"
    serve = f"mkdir -p /tmp/www && {page} && httpd -p 8080 -h /tmp/www"
    ok(cloud.cli("exec", server, "sh", "-c", serve))
    try:
        got = cloud.cli("exec", client, "sh", "-c", f"wget -q -O - http://{address}:8080/big | wc -c")
    finally:
        ok(cloud.cli("exec", server, "killall", "httpd"))
    return got.returncode == 0 and got.stdout.decode().strip() == str(size_kb * 1024)


def fast_path_on(veth: str) -> bool:
    """Whether the agent's eBPF fast path is attached to this host-side veth (tc ingress)."""
    shown = subprocess.run(["tc", "filter", "show", "dev", veth, "ingress"], capture_output=True, text=True)
    return "from_port" in shown.stdout and "direct-action" in shown.stdout


def uplink_network() -> tuple[str, str] | None:
    """(interface, CIDR) of the link-scope route of the interface the default route leaves by."""
    default = subprocess.run(
        ["ip", "-4", "route", "show", "default"], capture_output=True, text=True
    ).stdout.split()
    if "dev" not in default:
        return None
    dev = default[default.index("dev") + 1]
    routes = subprocess.run(
        ["ip", "-4", "route", "show", "dev", dev, "scope", "link"], capture_output=True, text=True
    )
    cidrs = [line.split()[0] for line in routes.stdout.splitlines() if "/" in line.split()[0]]
    return (dev, cidrs[0]) if cidrs else None


def test_the_hosts_network_is_refused_and_auto_avoids_it(cloud: Cloud, api: AtollAPI) -> None:
    found = uplink_network()
    if found is None:
        pytest.skip("this machine has no default route with a link-scope subnet to collide with")
    dev, cidr = found
    result = cloud.cli("network", "create", "clash", "--subnet", cidr)
    assert result.returncode == 1
    assert (
        f"subnets[0].cidr: {cidr} overlaps {cidr} of the host's interface {dev} on host"
        in result.stderr.decode()
    )
    assert not any(n.name == "clash" for n in api.networks())
    ok(cloud.cli("network", "create", "picked", "--subnet", "auto"))
    (subnet,) = api.inspect_network("picked").subnets
    assert not ipaddress.ip_network(subnet.cidr).overlaps(ipaddress.ip_network(cidr))
    ok(cloud.cli("network", "rm", "picked"))
