"""Security groups and port publishing end to end: `atoll up` in a subprocess, driven through the CLI.

Traffic stays between instances' namespaces, the host's loopback, and a namespace the test makes and
joins to the host with a veth of its own; nothing goes out of the machine's uplink.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cloud import Cloud, free_port
from tests.e2e.helpers import wait_for
from tests.prefix import RUN_PREFIX

REQUEST = r"printf 'GET / HTTP/1.0\r\n\r\n'"
SERVE = "httpd -p 81 -h /etc; exec httpd -f -p 80 -h /etc"


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def refused(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode != 0, result.stdout.decode()
    return result.stderr.decode()


def tcp_ok(cloud: Cloud, name: str, address: str, port: int) -> bool:
    """An HTTP answer from address:port, asked from inside instance ``name`` (busybox nc, 2 s)."""
    result = cloud.cli("exec", name, "sh", "-c", f"{REQUEST} | nc -w 2 {address} {port}")
    return result.returncode == 0 and b"HTTP/1" in result.stdout


def curl(url: str, netns: Path | None = None) -> bool:
    prefix = ["nsenter", f"--net={netns}"] if netns else []
    return (
        subprocess.run([*prefix, "curl", "-s", "-o", "/dev/null", "-m", "2", url], check=False).returncode
        == 0
    )


def test_security_groups_allow_and_deny(cloud: Cloud) -> None:
    ok(cloud.cli("network", "create", "sgnet", "--subnet", "10.91.0.0/24"))
    ok(cloud.cli("sg", "create", "web"))
    ok(cloud.cli("sg", "create", "clients"))
    ok(
        cloud.cli(
            "sg",
            "rule",
            "add",
            "web",
            "--ingress",
            "--proto",
            "tcp",
            "--port",
            "80",
            "--remote-group",
            "clients",
        )
    )
    assert "port_range_min" in refused(
        cloud.cli("sg", "rule", "add", "web", "--proto", "tcp", "--port", "99999")
    )
    assert "remote_ip_prefix" in refused(cloud.cli("sg", "rule", "add", "web", "--remote-ip", "10.1.2.3/8"))
    base = ["run", "-d", "--network", "sgnet"]
    ok(cloud.cli(*base, "--name", "sg-web", "--sg", "web", "busybox", "sh", "-c", SERVE))
    ok(cloud.cli(*base, "--name", "sg-client", "--sg", "clients", "busybox", "sleep", "3600"))
    ok(cloud.cli(*base, "--name", "sg-other", "busybox", "sleep", "3600"))  # the default group
    ok(cloud.cli(*base, "--name", "sg-other2", "busybox", "sleep", "3600"))
    web = cloud.api().inspect_instance("sg-web").networks[0].ip
    other2 = cloud.api().inspect_instance("sg-other2").networks[0].ip
    wait_for(lambda: tcp_ok(cloud, "sg-client", web, 80), what="clients reach web:80")
    assert not tcp_ok(cloud, "sg-client", web, 81)  # only port 80 is open
    assert not tcp_ok(cloud, "sg-other", web, 80)  # and only to members of clients
    ping = ["exec", "sg-other", "ping", "-c", "1", "-W", "2"]
    assert cloud.cli(*ping, other2).returncode == 0  # the default group: members reach each other
    assert cloud.cli(*ping, web).returncode != 0

    # Changes apply to running instances at once (no waiting for a reconcile).
    ok(
        cloud.cli(
            "sg",
            "rule",
            "add",
            "web",
            "--ingress",
            "--proto",
            "tcp",
            "--port",
            "81:82",
            "--remote-ip",
            "0.0.0.0/0",
        )
    )
    assert tcp_ok(cloud, "sg-other", web, 81)
    ok(cloud.cli("port", "update", "sg-other", "--instance", "--sg", "clients", "--sg", "default"))
    assert tcp_ok(cloud, "sg-other", web, 80)
    shown = ok(cloud.cli("sg", "show", "web"))
    assert "group clients" in shown and "81:82" in shown
    listed = ok(cloud.cli("sg", "ls"))
    assert all(name in listed for name in ("default", "web", "clients"))
    assert "in use" in refused(cloud.cli("sg", "rm", "web"))
    # Deleting a client takes its address out of the group everywhere.
    rule_ids = [r.id for r in cloud.api().inspect_security_group("web").rules if r.port_range_min == 81]
    ok(cloud.cli("sg", "rule", "rm", *rule_ids))
    assert not tcp_ok(cloud, "sg-other", web, 81)

    for name in ("sg-web", "sg-client", "sg-other", "sg-other2"):
        ok(cloud.cli("rm", "-f", name))
    ok(cloud.cli("sg", "rm", "web", "clients"))
    ok(cloud.cli("network", "rm", "sgnet"))


@pytest.fixture
def remote(cloud: Cloud) -> Iterator[tuple[Path, str]]:
    """A namespace joined to the host by a veth (198.18.x.1 on the host's end, forwarding on for it
    alone); yields its path and the host's address on the veth."""
    name = f"{RUN_PREFIX}-remote-{secrets.token_hex(3)}"
    link = f"{cloud.net_prefix}t-{secrets.token_hex(3)}"
    third = secrets.randbelow(250)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(
            ["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", name], check=True
        )
        subprocess.run(["ip", "addr", "add", f"198.18.{third}.1/30", "dev", link], check=True)
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
        subprocess.run(["sysctl", "-qw", f"net.ipv4.conf.{link}.forwarding=1"], check=True)
        for cmd in (
            ["ip", "addr", "add", f"198.18.{third}.2/30", "dev", "eth0"],
            ["ip", "link", "set", "eth0", "up"],
        ):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        yield Path("/run/netns") / name, f"198.18.{third}.1"
    finally:
        subprocess.run(["ip", "link", "del", link], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_published_ports(cloud: Cloud, remote: tuple[Path, str]) -> None:
    netns, host_address = remote
    ok(cloud.cli("network", "create", "pubnet", "--subnet", "10.92.0.0/24"))
    fixed = free_port()
    ok(
        cloud.cli(
            "run", "-d", "--name", "pub-web", "--network", "pubnet",  # default group: no ingress from outside
            "-p", f"{fixed}:80", "-p", "80", "-p", "127.0.0.1::81",
            "busybox", "sh", "-c", SERVE,
        )
    )  # fmt: skip
    lines = ok(cloud.cli("port", "mappings", "pub-web")).splitlines()
    assert lines[0] == f"80/tcp -> 0.0.0.0:{fixed}"
    random_port = int(lines[1].rsplit(":", 1)[1])
    local_only = int(lines[2].rsplit(":", 1)[1])
    assert lines[1].startswith("80/tcp -> 0.0.0.0:") and lines[2].startswith("81/tcp -> 127.0.0.1:")
    wait_for(lambda: curl(f"http://127.0.0.1:{fixed}/"), what="the published port answers")
    assert curl(f"http://127.0.0.1:{random_port}/")
    assert curl(f"http://127.0.0.1:{local_only}/")
    assert curl(f"http://{host_address}:{fixed}/", netns)  # from another namespace, through the host
    assert not curl(f"http://{host_address}:{local_only}/", netns)  # published on 127.0.0.1 only

    # Taken ports: by another instance (the controller knows), by a process of the host (the host does).
    assert f"{fixed}/tcp is already published" in refused(
        cloud.cli("run", "-d", "-p", f"{fixed}:80", "busybox", "true")
    )
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        assert f"{busy}/tcp is already in use" in refused(
            cloud.cli("run", "-d", "-p", f"{busy}:80", "busybox", "true")
        )
    assert len(cloud.api().instances(all=True)) == 1  # nothing half-made

    # Published traffic passes the default group implicitly; on the tenant network it does not.
    ok(cloud.cli("sg", "create", "lonely"))
    ok(
        cloud.cli(
            "run",
            "-d",
            "--name",
            "pub-peer",
            "--network",
            "pubnet",
            "--sg",
            "lonely",
            "busybox",
            "sleep",
            "1d",
        )
    )
    tenant_ip = cloud.api().inspect_instance("pub-web").networks[0].ip
    assert not tcp_ok(cloud, "pub-peer", tenant_ip, 80)

    # Kernel rules, no proxy: published ports and security groups hold while Atoll is down, and after.
    cloud.kill9()
    assert curl(f"http://127.0.0.1:{fixed}/") and curl(f"http://{host_address}:{fixed}/", netns)
    cloud.start()
    assert curl(f"http://127.0.0.1:{random_port}/")
    assert not tcp_ok(cloud, "pub-peer", tenant_ip, 80)
    ok(
        cloud.cli(
            "sg", "rule", "add", "default", "--proto", "tcp", "--port", "80", "--remote-group", "lonely"
        )
    )
    assert tcp_ok(cloud, "pub-peer", tenant_ip, 80)  # the restarted agent applies changes at once
    ok(cloud.cli("rm", "-f", "pub-web", "pub-peer"))
    ok(
        cloud.cli(
            "sg",
            "rule",
            "rm",
            *[r.id for r in cloud.api().inspect_security_group("default").rules if r.port_range_min == 80],
        )
    )
    ok(cloud.cli("sg", "rm", "lonely"))
    assert not curl(f"http://127.0.0.1:{fixed}/")
    ok(cloud.cli("network", "rm", "pubnet"))
    # Nothing of the dataplane is left: no links, no tables in any family.
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith(cloud.net_prefix) and "t-" not in n]
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert cloud.nft_table not in listed
