"""Published ports on a real kernel: host ports DNATed to an instance through its publishing veth, in a
host namespace per test (see conftest). Clients: the host namespace itself (also through 127.0.0.1)
and a "remote" namespace the test wires to the host with a veth."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Interface
from pathlib import Path

import pytest
from pyroute2 import Conntrack

from atoll.agent.net import netns
from atoll.agent.net.dataplane import HostNetwork
from atoll.model.errors import Conflict
from atoll.model.instance import InstanceSpec
from atoll.model.publish import PublishedPort
from atoll.model.secgroups import HostSecurity
from tests.prefix import RUN_PREFIX

from .helpers import Host, Server, fetch, in_netns, instance, new_id, port

NET = new_id()


@pytest.fixture
def remote(host: Host) -> Iterator[Path]:
    """A namespace with 10.99.0.2/24, joined to the host namespace (10.99.0.1/24) by a veth."""
    name = f"{RUN_PREFIX}-remote-{new_id()[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        host.run("ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", name)
        host.run("ip", "addr", "add", "10.99.0.1/24", "dev", "uplink0")
        host.run("ip", "link", "set", "uplink0", "up")
        path = Path("/run/netns") / name
        in_netns(path, "ip", "addr", "add", "10.99.0.2/24", "dev", "eth0")
        in_netns(path, "ip", "link", "set", "eth0", "up")
        in_netns(path, "ip", "link", "set", "lo", "up")
        yield path
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_published_ports_reach_the_instance(
    dataplane: HostNetwork, host: Host, remote: Path, tmp_path: Path
) -> None:
    spec = replace(
        instance(port(NET, "10.0.0.2")),
        published=[
            PublishedPort("tcp", 8080, 80),
            PublishedPort("tcp", 8081, 80, host_ip="127.0.0.1"),
        ],
    )
    asyncio.run(dataplane.set_security(HostSecurity()))  # no rule allows anything: -p still works
    asyncio.run(dataplane.attach(spec))
    server = Server(dataplane.netns_path(spec.id), 80, tmp_path / "www")
    try:
        assert fetch(host.path, "http://127.0.0.1:8080/")  # the host's loopback
        assert fetch(host.path, "http://10.99.0.1:8080/")  # one of the host's addresses
        assert fetch(remote, "http://10.99.0.1:8080/")  # another machine (namespace)
        assert fetch(host.path, "http://127.0.0.1:8081/")
        assert not fetch(remote, "http://10.99.0.1:8081/")  # published on 127.0.0.1 only
        assert not fetch(remote, "http://10.99.0.1:80/")  # only published ports
        pub = dataplane.names.publish(spec.id)
        assert pub in host.links()
        # The instance cannot use its publishing veth to reach the host, nor anything beyond it.
        inside = dataplane.netns_path(spec.id)
        host_end = in_netns(inside, "ip", "-4", "-o", "addr", "show", "pub0").stdout.split()[3]
        assert host_end.endswith("/31")
        gateway = str(IPv4Interface(host_end).ip - 1)
        listener = subprocess.Popen(["ip", "netns", "exec", host.name, "busybox", "nc", "-l", "-p", "9999"])
        try:
            assert in_netns(inside, "busybox", "nc", "-w", "2", gateway, "9999").returncode != 0
        finally:
            listener.kill()
            listener.wait()
        # The agent goes away: the kernel keeps forwarding. A new one finds the same address again.
        fresh = HostNetwork(dataplane.config)
        asyncio.run(fresh.sync([spec]))
        assert fetch(remote, "http://10.99.0.1:8080/")
        assert in_netns(inside, "ip", "-4", "-o", "addr", "show", "pub0").stdout.split()[3] == host_end
    finally:
        server.stop()
    asyncio.run(dataplane.release(spec.id, spec.ports))
    assert pub not in host.links()
    assert not fetch(host.path, "http://127.0.0.1:8080/")


def test_publishing_without_networks(dataplane: HostNetwork, host: Host, tmp_path: Path) -> None:
    spec = replace(instance(), published=[PublishedPort("tcp", 8080, 80)])
    asyncio.run(dataplane.attach(spec))
    server = Server(dataplane.netns_path(spec.id), 80, tmp_path / "www")
    try:
        assert fetch(host.path, "http://127.0.0.1:8080/")
    finally:
        server.stop()
    asyncio.run(dataplane.release(spec.id))
    assert not host.links() & {dataplane.names.publish(spec.id)}
    assert not host.nft_tables()


def test_a_port_the_host_listens_on_is_refused(dataplane: HostNetwork, host: Host) -> None:
    spec = replace(instance(port(NET, "10.0.0.2")), published=[PublishedPort("tcp", 8082, 80)])
    with subprocess.Popen(
        ["ip", "netns", "exec", host.name, "busybox", "nc", "-l", "-p", "8082"]
    ) as listener:
        try:
            deadline = 50
            while deadline and "8082" not in host.run("ss", "-Hltn").stdout:
                deadline -= 1
                time.sleep(0.05)
            with pytest.raises(Conflict, match="8082/tcp is already in use"):
                asyncio.run(dataplane.attach(spec))
        finally:
            listener.kill()
    assert not {n for n in host.links() if n.startswith(dataplane.names.prefix)}  # nothing half-made


UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
print("ready", flush=True)
s.settimeout(10)
data, peer = s.recvfrom(100)
print(data.decode(), flush=True)
"""


def test_udp_and_many_instances_get_their_own_pairs(dataplane: HostNetwork, host: Host) -> None:
    a = replace(instance(), published=[PublishedPort("udp", 5353, 53)])
    b = replace(instance(), published=[PublishedPort("tcp", 8090, 80), PublishedPort("udp", 5354, 53)])
    asyncio.run(dataplane.attach(a))
    asyncio.run(dataplane.attach(b))
    addrs = {
        in_netns(dataplane.netns_path(s.id), "ip", "-4", "-o", "addr", "show", "pub0").stdout.split()[3]
        for s in (a, b)
    }
    assert len(addrs) == 2
    rules = host.run("nft", "list", "table", "inet", dataplane.names.table).stdout
    assert "udp dport 5353 dnat ip to" in rules and "udp dport 5354" in rules
    inside = dataplane.netns_path(a.id)
    with subprocess.Popen(
        ["nsenter", f"--net={inside}", sys.executable, "-c", UDP_ECHO], stdout=subprocess.PIPE, text=True
    ) as listener:
        try:
            assert listener.stdout is not None
            assert listener.stdout.readline().strip() == "ready"
            send = "import socket; socket.socket(2, 2).sendto(b'ping', ('127.0.0.1', 5353))"
            host.run(sys.executable, "-c", send)
            assert listener.stdout.readline().strip() == "ping"
        finally:
            listener.kill()


UDP_CLIENT = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40001))
s.sendto(b"hi", ("10.99.0.1", 5354))
print("sent", flush=True)
s.settimeout(20)
print(s.recvfrom(100)[0].decode(), flush=True)
"""


def test_an_instance_cannot_answer_for_another(dataplane: HostNetwork, host: Host, remote: Path) -> None:
    """B publishes a UDP port and a remote client talks to it. A knows (or guesses) the flow and sends,
    through its own publishing veth, a packet with B's address as source: it must not reach the client
    as B's answer (the publishing veths' rules pass replies of open flows, so the source must be
    checked: each veth carries only its own instance's address)."""
    a = replace(instance(), published=[PublishedPort("udp", 5355, 53)])
    b = replace(instance(), published=[PublishedPort("udp", 5354, 53)])
    for spec in (a, b):
        asyncio.run(dataplane.attach(spec))

    def pub0(spec: InstanceSpec) -> IPv4Interface:
        shown = in_netns(dataplane.netns_path(spec.id), "ip", "-4", "-o", "addr", "show", "pub0").stdout
        return IPv4Interface(shown.split()[3])

    b_addr, a_addr = pub0(b).ip, pub0(a).ip
    b_host_end, a_host_end = b_addr - 1, a_addr - 1
    at_a = dataplane.netns_path(a.id)
    in_netns(at_a, "ip", "addr", "add", f"{b_addr}/32", "dev", "pub0")
    in_netns(at_a, "ip", "route", "add", f"{b_host_end}/32", "via", str(a_host_end), "dev", "pub0")
    listen = ["nsenter", f"--net={dataplane.netns_path(b.id)}", sys.executable, "-c", UDP_ECHO]
    with subprocess.Popen(listen, stdout=subprocess.PIPE, text=True) as listener:
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "ready"
        client_args = ["nsenter", f"--net={remote}", sys.executable, "-c", UDP_CLIENT]
        with subprocess.Popen(client_args, stdout=subprocess.PIPE, text=True) as client:
            try:
                assert client.stdout is not None
                assert client.stdout.readline().strip() == "sent"
                assert listener.stdout.readline().strip() == "hi"  # B has the flow
                [reply_port] = netns.run_in(host.path, lambda: _reply_ports(5354))
                spoof = (
                    "import socket; s = socket.socket(2, 2); "
                    f"s.bind(('{b_addr}', 53)); s.sendto(b'spoofed', ('{b_host_end}', {reply_port}))"
                )
                assert in_netns(at_a, sys.executable, "-c", spoof).returncode == 0
                # Then a datagram that does reach the client, by the same last hop: the first it gets.
                end = "import socket; socket.socket(2, 2).sendto(b'end', ('10.99.0.2', 40001))"
                host.run(sys.executable, "-c", end)
                assert client.stdout.readline().strip() == "end"
            finally:
                listener.kill()
                client.kill()


def _reply_ports(dport: int) -> list[int]:
    """The destination port of the reply direction of each UDP flow to ``dport`` (after masquerade)."""
    with Conntrack() as ct:
        return [
            entry.tuple_reply.dport
            for entry in ct.dump_entries()
            if entry.tuple_orig.proto == socket.IPPROTO_UDP and entry.tuple_orig.dport == dport
        ]
