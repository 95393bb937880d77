"""Routers, SNAT and floating IPs end to end: `atoll up` in a subprocess, busybox instances, and an
"outside" namespace that the test makes and joins to the host with a veth, the external network's
uplink. The outside has 203.0.113.1/24 and no other route, so traffic never leaves it for the machine's
own uplink, and it can only answer the router's addresses (which is what proves SNAT)."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from atoll.client import AtollError
from tests.e2e.cloud import Cloud
from tests.prefix import NET_PREFIX, RUN_PREFIX

OUTSIDE_IP = "203.0.113.1"


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip()


class Outside:
    def __init__(self) -> None:
        self.name = f"{RUN_PREFIX}-out-{secrets.token_hex(3)}"
        self.uplink = f"{NET_PREFIX}-u{secrets.token_hex(3)}"  # not the cloud's prefix: the test's own link

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *args], capture_output=True, text=True, timeout=timeout
        )

    def pings(self, address: str) -> bool:
        return self.run("busybox", "ping", "-c", "1", "-W", "2", address).returncode == 0

    def peer_of_next_connection(self) -> subprocess.Popen[str]:
        """A TCP listener on 203.0.113.1:9999 that prints the source address of the first connection."""
        code = (
            "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
            f" s.bind(('{OUTSIDE_IP}', 9999)); s.listen(); s.settimeout(20);"
            " print(s.accept()[1][0], flush=True)"
        )
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, "python3", "-c", code], stdout=subprocess.PIPE, text=True
        )

    def source_of_connection(self, connect: Callable[[], object], seconds: float = 15) -> str:
        """Call ``connect`` (something that connects to 203.0.113.1:9999) until the outside has seen a
        connection; the source address it saw ("" if none came)."""
        listener = self.peer_of_next_connection()
        try:
            deadline = time.monotonic() + seconds
            while listener.poll() is None and time.monotonic() < deadline:
                connect()
                time.sleep(0.2)
            out, _ = listener.communicate(timeout=20)
            return out.strip()
        finally:
            if listener.poll() is None:
                listener.kill()
                listener.wait()


@pytest.fixture
def outside() -> Iterator[Outside]:
    out = Outside()
    subprocess.run(["ip", "netns", "add", out.name], check=True)
    try:
        subprocess.run(
            ["ip", "link", "add", out.uplink, "type", "veth", "peer", "name", "ext0", "netns", out.name],
            check=True,
        )
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{out.uplink}.disable_ipv6=1"], check=True)
        subprocess.run(["ip", "link", "set", out.uplink, "up"], check=True)
        out.run("ip", "addr", "add", f"{OUTSIDE_IP}/24", "dev", "ext0")
        out.run("ip", "link", "set", "ext0", "up")
        out.run("ip", "link", "set", "lo", "up")
        yield out
    finally:
        subprocess.run(["ip", "link", "del", out.uplink], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", out.name], check=False)


def run_on(cloud: Cloud, name: str, network: str, project: str = "default") -> str:
    ok(
        cloud.cli(
            "--project",
            project,
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "busybox",
            "sleep",
            "3600",
        )
    )
    return cloud.api(project).inspect_instance(name).networks[0].ip


def pings(cloud: Cloud, name: str, address: str) -> bool:
    return cloud.cli("exec", name, "ping", "-c", "1", "-W", "2", address).returncode == 0


def source_seen_outside(cloud: Cloud, outside: Outside, name: str) -> str:
    """Connect from instance ``name`` to the outside; the address the outside saw."""
    return outside.source_of_connection(
        lambda: cloud.cli("exec", name, "sh", "-c", f"echo hi | nc -w 2 {OUTSIDE_IP} 9999", timeout=10)
    )


def allow_inbound(cloud: Cloud, instance: str) -> None:
    """Let the outside reach ``instance`` (its floating IP): the default security group drops ingress
    from outside the group, so it gets a rule for the outside's addresses (as in OpenStack)."""
    del instance  # the rule is on the group the instance is in
    if "203.0.113.0/24" not in cloud.cli("sg", "show", "default").stdout.decode():
        ok(cloud.cli("sg", "rule", "add", "default", "--ingress", "--remote-ip", "203.0.113.0/24"))


def test_router_snat_and_floating_ip(cloud: Cloud, outside: Outside) -> None:
    api = cloud.api()
    ok(
        cloud.cli(
            "network", "create", "ext", "--external", "--subnet", "203.0.113.0/24", "--uplink", outside.uplink
        )
    )
    ok(cloud.cli("network", "create", "left", "--subnet", "10.61.0.0/24"))
    ok(cloud.cli("network", "create", "right", "--subnet", "10.62.0.0/24"))
    ip_a = run_on(cloud, "ra", "left")
    ip_b = run_on(cloud, "rb", "right")
    assert not pings(cloud, "ra", ip_b)

    # A router joins the two networks: instances now reach each other through it.
    ok(cloud.cli("router", "create", "r1"))
    ok(cloud.cli("router", "add-interface", "r1", "10.61.0.0_24"))
    ok(cloud.cli("router", "add-interface", "r1", "10.62.0.0_24"))
    assert pings(cloud, "ra", ip_b) and pings(cloud, "rb", ip_a)
    assert not pings(cloud, "ra", OUTSIDE_IP)

    # With a gateway on the external network, the outside sees the router's address (SNAT).
    ok(cloud.cli("router", "set", "r1", "--external-gateway", "ext"))
    router_ip = api.inspect_router("r1").external_gateway.ip  # type: ignore[union-attr]
    assert router_ip == "203.0.113.2"
    assert pings(cloud, "ra", OUTSIDE_IP)
    assert source_seen_outside(cloud, outside, "ra") == router_ip
    assert "ext" in ok(cloud.cli("network", "ls"))

    # A floating IP: reachable from the outside, and the instance's own traffic leaves with it.
    fip = ok(cloud.cli("fip", "create", "ext"))
    assert fip == "203.0.113.3"
    ok(cloud.cli("fip", "associate", fip, "ra"))
    allow_inbound(cloud, "ra")
    assert outside.pings(fip)
    assert source_seen_outside(cloud, outside, "ra") == fip
    assert not outside.pings(ip_a)  # fixed addresses are not reachable from outside

    # It follows its port: move it to a second instance, remove the first, and it still answers.
    run_on(cloud, "ra2", "left")
    ok(cloud.cli("fip", "associate", fip, "ra2"))
    allow_inbound(cloud, "ra2")
    ok(cloud.cli("rm", "-f", "ra"))
    assert outside.pings(fip)
    assert source_seen_outside(cloud, outside, "ra2") == fip
    assert fip in ok(cloud.cli("fip", "ls"))

    # Another project can use the external network but not this project's ports.
    ok(cloud.cli("project", "create", "blue"))
    blue = cloud.api("blue")
    assert "ext" in ok(cloud.cli("--project", "blue", "network", "ls"))  # shared with every project
    theirs = ok(cloud.cli("--project", "blue", "fip", "create", "ext"))
    result = cloud.cli("--project", "blue", "fip", "associate", theirs, "ra2")
    assert result.returncode != 0 and b"not found" in result.stderr
    with pytest.raises(AtollError, match="not found"):
        blue.inspect_router("r1")
    ok(cloud.cli("--project", "blue", "fip", "rm", theirs))

    # While the control plane is down, routed traffic flows on; after it comes back, all still works.
    ra2 = api.inspect_instance("ra2").id
    cloud.kill9()
    netns = cloud.base / "run" / "netns" / ra2
    assert _ping_from(netns, ip_b) and outside.pings(fip)
    cloud.start()
    assert pings(cloud, "ra2", ip_b) and outside.pings(fip)

    # Tear down in order; the router's namespace and legs go at once.
    result = cloud.cli("router", "rm", "r1")
    assert result.returncode != 0 and b"has interfaces" in result.stderr
    result = cloud.cli("network", "rm", "left")
    assert result.returncode != 0 and b"joined to router" in result.stderr
    ok(cloud.cli("fip", "rm", fip))
    for name in ("ra2", "rb"):
        ok(cloud.cli("rm", "-f", name))
    router_id = api.inspect_router("r1").id
    for subnet in ("10.61.0.0_24", "10.62.0.0_24"):
        ok(cloud.cli("router", "remove-interface", "r1", subnet))
    ok(cloud.cli("router", "rm", "r1"))
    assert not (cloud.base / "run" / "routers" / router_id).exists()
    ok(cloud.cli("network", "rm", "left", "right", "ext"))
    assert not [n for n in Path("/sys/class/net").iterdir() if n.name.startswith(cloud.net_prefix)]
    assert (
        "master"
        not in subprocess.run(["ip", "link", "show", outside.uplink], capture_output=True, text=True).stdout
    )


def _ping_from(netns: Path, address: str) -> bool:
    cmd = ["nsenter", f"--net={netns}", "busybox", "ping", "-c", "1", "-W", "2", address]
    return subprocess.run(cmd, capture_output=True, timeout=20).returncode == 0
