"""A host of the two-host kernel tests (tests/net/underlay.py): the namespace that plays the host, its
underlay address, and the agent's dataplane classes (HostNetwork, OverlayPlane) made for it, each host
keeping its instance and router namespaces under a directory of its own."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from atoll.agent.net import bigtcp
from atoll.agent.net.dataplane import HostNetwork, NetConfig
from atoll.agent.net.names import Names
from atoll.agent.net.overlay import OverlayConfig, OverlayPlane
from tests.prefix import NET_PREFIX, NFT_TABLE

from .helpers import Host


@dataclass
class Node:
    host: Host
    underlay: str
    net: HostNetwork
    overlay: OverlayPlane

    def ours(self) -> set[str]:
        """The links on this host named with the run's prefix."""
        return {n for n in self.host.links() if n.startswith(NET_PREFIX)}

    def again(self) -> Node:
        """This host's dataplanes as an agent started again makes them: same settings, no memory."""
        net = HostNetwork(self.net.config)
        fast = net.fast if self.overlay.fast is not None else None
        return Node(self.host, self.underlay, net, OverlayPlane(self.overlay.config, fast))

    def clear(self) -> None:
        """Converge to nothing assigned here (instances, routers, overlay networks) and check that
        nothing of the test is left on the host."""
        asyncio.run(self.net.sync([], routers=[]))
        asyncio.run(self.overlay.converge([]))
        assert self.ours() == set(), self.ours()
        assert not self.host.nft_tables()


def start(
    host: Host,
    address: str,
    state: Path,
    *,
    fast_path: bool = True,
    overlay_fast: bool = True,
    gso_size: int = bigtcp.LEGACY,
) -> Node:
    """A node for ``host`` with underlay ``address``, keeping its namespaces under ``state``.
    ``overlay_fast``: the overlay plane tells the fast path about VXLAN devices and remote ports, as the
    agent's does; off, the fast path knows only this host's ports (the overlay tests were written so).
    ``fast_path`` and ``gso_size`` are the agent's settings (``NetConfig``)."""
    names = Names(NET_PREFIX, NFT_TABLE)
    config = NetConfig(
        names=names,
        netns_dir=state / "netns",
        routers_dir=state / "routers",
        host_netns=host.path,
        fast_path=fast_path,
        gso_size=gso_size,
    )
    net = HostNetwork(config)
    overlay = OverlayConfig(names, underlay_ip=address, host_netns=host.path)
    return Node(host, address, net, OverlayPlane(overlay, net.fast if overlay_fast else None))
