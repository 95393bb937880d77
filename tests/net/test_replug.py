"""Hot-plugged NICs in the dataplane (``HostNetwork.replug``), on a real kernel in a host namespace per
test: a NIC appears in the instance's existing namespace, goes again with its veth and bridge, the
default route follows the first NIC with a gateway, and a sync (an agent restart) agrees."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from atoll.agent.net.dataplane import HostNetwork

from .helpers import Host, in_netns, instance, new_id, ping, port

NET_A, NET_B = new_id(), new_id()


def test_plug_and_unplug_in_the_same_namespace(dataplane: HostNetwork, host: Host) -> None:
    eth0 = port(NET_A, "10.0.0.2", gateway="10.0.0.1")
    app = instance(eth0)
    peer = instance(port(NET_B, "10.9.0.3", gateway="10.9.0.1"))
    asyncio.run(dataplane.attach(app))
    asyncio.run(dataplane.attach(peer))
    path = dataplane.netns_path(app.id)
    inode = path.stat().st_ino  # the very namespace a running instance would be in
    assert not ping(path, "10.9.0.3")

    eth1 = port(NET_B, "10.9.0.2", gateway="10.9.0.1", device="eth1")
    plugged = replace(app, ports=[eth0, eth1])
    asyncio.run(dataplane.replug(plugged))
    asyncio.run(dataplane.replug(plugged))  # idempotent
    assert path.stat().st_ino == inode
    assert "10.9.0.2/24" in in_netns(path, "ip", "-o", "-4", "addr", "show", "eth1").stdout
    assert ping(path, "10.9.0.3") and ping(dataplane.netns_path(peer.id), "10.9.0.2")
    assert "default via 10.0.0.1 dev eth0" in in_netns(path, "ip", "route").stdout

    # eth0 goes: its veth and its bridge (no other port) go, the default route moves to eth1.
    unplugged = replace(app, ports=[eth1])
    asyncio.run(dataplane.replug(unplugged))
    assert dataplane.names.veth(eth0.id) not in host.links()
    assert dataplane.names.bridge(NET_A) not in host.links()
    inside = in_netns(path, "ip", "-o", "link").stdout
    assert "eth0" not in inside and "eth1" in inside
    assert "default via 10.9.0.1 dev eth1" in in_netns(path, "ip", "route").stdout
    assert ping(path, "10.9.0.3")

    # A restarted agent gets the same from the database: nothing changes.
    before = host.run("ip", "-o", "link").stdout
    asyncio.run(dataplane.sync([unplugged, peer]))
    assert host.run("ip", "-o", "link").stdout == before

    # The last NIC goes: the peer is unreachable; the namespace stays for the running instance.
    asyncio.run(dataplane.replug(replace(app, ports=[])))
    assert dataplane.names.veth(eth1.id) not in host.links()
    assert path.stat().st_ino == inode
    assert not ping(dataplane.netns_path(peer.id), "10.9.0.2")
