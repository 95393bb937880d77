"""Hot-plugged NICs end to end: `atoll up`, busybox instances, `atoll network connect/disconnect`.

A running instance gets a second NIC at once and reaches (and resolves) a peer on the new network; the
NIC survives a kill -9 of the control plane (the agent's reconcile derives it from the database);
disconnecting removes it, the peer is unreachable again and the address is free. An instance that was
created (not started) gets its NIC at its first start.
"""

from __future__ import annotations

import subprocess

from atoll.schemas import InstanceCreate
from tests.e2e.cloud import Cloud
from tests.e2e.helpers import wait_for


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, (result.stdout.decode(), result.stderr.decode())
    return result.stdout.decode()


def ping(cloud: Cloud, instance: str, target: str, *, tries: int = 3) -> bool:
    """One echo answered, in up to ``tries`` attempts (a loaded machine may lose the first)."""
    for _ in range(tries):
        if cloud.cli("exec", instance, "ping", "-c", "1", "-W", "2", target).returncode == 0:
            return True
    return False


def once(cloud: Cloud, instance: str, target: str) -> bool:
    return ping(cloud, instance, target, tries=1)


def test_connect_and_disconnect_a_running_instance(fresh_cloud: Cloud) -> None:
    cloud = fresh_cloud
    api = cloud.api()
    # Each network names a DNS server nobody holds: no query is forwarded out of the machine.
    ok(cloud.cli("network", "create", "np-a", "--subnet", "10.81.0.0/24", "--dns", "10.81.0.250"))
    ok(cloud.cli("network", "create", "np-b", "--subnet", "10.82.0.0/24", "--dns", "10.82.0.250"))
    ok(cloud.cli("run", "-d", "--name", "np-app", "--network", "np-a", "busybox", "sleep", "3600"))
    ok(cloud.cli("run", "-d", "--name", "np-peer", "--network", "np-b", "busybox", "sleep", "3600"))
    peer_ip = api.inspect_instance("np-peer").networks[0].ip
    assert not once(cloud, "np-app", "np-peer")  # no network in common: the name does not even resolve
    assert not once(cloud, "np-app", peer_ip)

    out = ok(cloud.cli("network", "connect", "np-b", "np-app", "--ip", "10.82.0.50", "--alias", "front"))
    assert out.split() == ["eth1", "10.82.0.50"]
    assert "10.82.0.50/24" in ok(cloud.cli("exec", "np-app", "ip", "-4", "addr", "show", "eth1"))
    assert ping(cloud, "np-app", "np-peer")  # by name, on the new network
    assert ping(cloud, "np-peer", "np-app") and ping(cloud, "np-peer", "front")  # name and alias
    routes = ok(cloud.cli("exec", "np-app", "ip", "route"))
    assert "default via 10.81.0.1 dev eth0" in routes  # the first NIC keeps the default route

    # The control plane dies and comes back: the NIC is still there and still works.
    cloud.kill9()
    cloud.start()
    assert api.inspect_instance("np-app").status == "running"
    assert ping(cloud, "np-app", "np-peer")

    # Disconnecting the first network moves the default route to the next NIC.
    ok(cloud.cli("network", "disconnect", "np-a", "np-app"))
    routes = ok(cloud.cli("exec", "np-app", "ip", "route"))
    assert "default via 10.82.0.1 dev eth1" in routes and "eth0" not in routes
    ok(cloud.cli("network", "connect", "np-a", "np-app"))
    assert [n.device for n in api.inspect_instance("np-app").networks] == ["eth1", "eth0"]

    ok(cloud.cli("network", "disconnect", "np-b", "np-app"))
    assert "eth1" not in ok(cloud.cli("exec", "np-app", "ip", "-o", "link"))
    assert not once(cloud, "np-app", peer_ip)
    wait_for(lambda: not once(cloud, "np-peer", "np-app"), what="np-app to leave np-b's names")
    assert [p.instance for p in api.ports(network="np-b")] == [api.inspect_instance("np-peer").id]
    # The address is free again: a fixed request for it succeeds.
    api.create_instance(InstanceCreate(image="busybox", name="np-late", command=["sleep", "3600"]))
    ok(cloud.cli("network", "connect", "np-b", "np-late", "--ip", "10.82.0.50"))
    api.start_instance("np-late")  # created, then connected: the NIC is there from the first start
    assert ping(cloud, "np-late", "np-peer")

    # Bad input: a clear error and nothing changed.
    bad = cloud.cli("network", "connect", "np-b", "np-late")
    assert bad.returncode != 0 and b"already connected" in bad.stderr
    for name in ("np-app", "np-peer", "np-late"):
        ok(cloud.cli("rm", "-f", name))
    ok(cloud.cli("network", "rm", "np-a", "np-b"))


def test_connect_a_running_instance_that_has_no_network(cloud: Cloud) -> None:
    """Started without any network, an instance runs in a namespace runc made: the agent keeps that
    one and plugs the NIC in there; names resolve (its resolv.conf and hosts are rewritten). After the
    last NIC leaves and a reconcile drops the mount, a new connect finds the namespace again."""
    ok(cloud.cli("network", "create", "np-c", "--subnet", "10.83.0.0/24", "--dns", "10.83.0.250"))
    ok(cloud.cli("run", "-d", "--name", "np-c-peer", "--network", "np-c", "busybox", "sleep", "3600"))
    ok(cloud.cli("run", "-d", "--name", "np-lone", "busybox", "sleep", "3600"))
    assert "eth0" not in ok(cloud.cli("exec", "np-lone", "ip", "-o", "link"))
    ok(cloud.cli("network", "connect", "np-c", "np-lone", "--ip", "10.83.0.77"))
    assert ping(cloud, "np-lone", "np-c-peer") and ping(cloud, "np-c-peer", "np-lone")
    assert ok(cloud.cli("exec", "np-lone", "cat", "/etc/resolv.conf")) == "nameserver 127.0.0.11\n"
    assert "10.83.0.77" in ok(cloud.cli("exec", "np-lone", "cat", "/etc/hosts"))

    ok(cloud.cli("network", "disconnect", "np-c", "np-lone"))
    assert not once(cloud, "np-lone", "10.83.0.2")
    lone = cloud.api().inspect_instance("np-lone").id
    mount = cloud.base / "run" / "netns" / lone
    wait_for(lambda: not mount.exists(), timeout=30, what="a reconcile to drop the namespace's mount")
    ok(cloud.cli("network", "connect", "np-c", "np-lone", "--mac", "02:42:ac:11:00:99"))
    assert ping(cloud, "np-lone", "np-c-peer")
    assert "02:42:ac:11:00:99" in ok(cloud.cli("exec", "np-lone", "ip", "link", "show", "eth0"))
    for name in ("np-lone", "np-c-peer"):
        ok(cloud.cli("rm", "-f", name))
    ok(cloud.cli("network", "rm", "np-c"))
