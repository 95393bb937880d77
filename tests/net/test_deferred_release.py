"""``HostNetwork.release(..., defer=True)``: the instance leaves the desired state at once and its links
and namespace go in the background. Its address can be reused at once, safely; a crash before the
background work leaves nothing that the next agent's start-up sync does not remove."""

from __future__ import annotations

import asyncio

from atoll.agent.net.dataplane import HostNetwork
from atoll.model.secgroups import Direction, GroupPolicy, HostSecurity, PortSecurity, RuleSpec

from .helpers import Host, in_netns, instance, new_id, ping, port

NET = new_id()
OPEN = new_id()


def policy(*specs: object) -> HostSecurity:
    """Every port in one group that lets everything in and out."""
    ports = [p for s in specs for p in s.ports]  # type: ignore[attr-defined]
    return HostSecurity(
        ports=[PortSecurity(p.id, p.network_id, p.ip, p.mac, [OPEN]) for p in ports],
        groups=[
            GroupPolicy(
                OPEN, [RuleSpec(Direction.EGRESS), RuleSpec(Direction.INGRESS)], [p.ip for p in ports]
            )
        ],
    )


def test_the_address_is_reusable_at_once_and_the_old_links_go(dataplane: HostNetwork, host: Host) -> None:
    peer = instance(port(NET, "10.0.0.2"))
    old = instance(port(NET, "10.0.0.3"))
    new = instance(port(NET, "10.0.0.3"))  # the same address, another port (MAC, veth)
    old_veth, new_veth = dataplane.names.veth(old.ports[0].id), dataplane.names.veth(new.ports[0].id)

    async def scenario() -> None:
        await dataplane.attach(peer, security=policy(peer, old))
        await dataplane.attach(old)
        await dataplane.release(old.id, defer=True)
        assert old_veth in host.links()  # still there (the removal waits for the loop) but cut off:
        assert not ping(dataplane.netns_path(peer.id), "10.0.0.3")  # its namespace would answer
        # At once, before the background removal: the address goes to a new instance. (The checks
        # below block the event loop, so the removal cannot run in between.)
        await dataplane.attach(new, security=policy(peer, new))
        assert {old_veth, new_veth} <= host.links()
        # The new one, by its own veth (the first echo may go while the peer's neighbour entry, failed
        # by the check above, resolves again).
        assert ping(dataplane.netns_path(peer.id), "10.0.0.3") or ping(
            dataplane.netns_path(peer.id), "10.0.0.3"
        )
        assert ping(dataplane.netns_path(new.id), "10.0.0.2")
        neighbours = in_netns(dataplane.netns_path(peer.id), "ip", "neigh", "show", "10.0.0.3").stdout
        assert new.ports[0].mac in neighbours and old.ports[0].mac not in neighbours
        await dataplane.settle()
        assert old_veth not in host.links()
        assert new_veth in host.links()
        assert not dataplane.netns_path(old.id).exists()
        # The security maps name the address once, with the new port's verdict; anti-spoofing knows
        # only the new veth.
        bridge = host.run("nft", "list", "table", "bridge", dataplane.names.table).stdout
        assert new_veth in bridge and old_veth not in bridge
        await dataplane.release(peer.id, defer=True)
        await dataplane.release(new.id, defer=True)
        await dataplane.settle()

    asyncio.run(scenario())
    assert host.links() == set()
    assert host.nft_tables() == set()


def test_a_crash_before_the_background_removal_leaves_nothing_after_the_next_sync(
    dataplane: HostNetwork, host: Host
) -> None:
    keep = instance(port(NET, "10.0.0.2"))
    gone = instance(port(NET, "10.0.0.3"))

    async def crash() -> None:
        await dataplane.attach(keep)
        await dataplane.attach(gone)
        await dataplane.release(gone.id, defer=True)
        for task in list(dataplane._teardowns.values()):  # the agent dies before its background work
            task.cancel()

    asyncio.run(crash())
    gone_veth = dataplane.names.veth(gone.ports[0].id)
    assert gone_veth in host.links() and dataplane.netns_path(gone.id).exists()  # left behind

    restarted = HostNetwork(dataplane.config)  # the next agent's start-up sync
    asyncio.run(restarted.sync([keep]))
    assert host.links() == {dataplane.names.bridge(NET), dataplane.names.veth(keep.ports[0].id)}
    assert not dataplane.netns_path(gone.id).exists()
    rules = host.run("nft", "list", "ruleset").stdout
    assert "10.0.0.3" not in rules
    assert ping(dataplane.netns_path(keep.id), "10.0.0.2")


def test_a_bridge_left_without_ports_lingers_for_the_next_instance(
    dataplane: HostNetwork, host: Host
) -> None:
    first = instance(port(NET, "10.0.0.2"))
    second = instance(port(NET, "10.0.0.2"))
    bridge = dataplane.names.bridge(NET)

    async def scenario() -> None:
        await dataplane.attach(first)
        index = host.run("cat", f"/sys/class/net/{bridge}/ifindex").stdout
        await dataplane.release(first.id, defer=True)
        while dataplane._teardowns:  # the veth and namespace go; the bridge and the tables stay
            await asyncio.sleep(0.01)
        assert host.links() == {bridge} and host.nft_tables()
        await dataplane.attach(second)  # within the linger: the same bridge
        assert host.run("cat", f"/sys/class/net/{bridge}/ifindex").stdout == index
        await dataplane.settle()  # the linger ends; the bridge is in use again, so it stays
        assert host.links() == {bridge, dataplane.names.veth(second.ports[0].id)}
        await dataplane.release(second.id, defer=True)
        await dataplane.settle()  # now it goes, and the tables with it

    asyncio.run(scenario())
    assert host.links() == set()
    assert host.nft_tables() == set()
