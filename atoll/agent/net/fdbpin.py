"""Pin an instance's MAC to its own veth on the bridge (``bridge fdb replace MAC dev VETH master static
sticky``).

Bridges learn where a MAC lives from the frames they see. While an instance ran on another host, this
host's bridge learned its MAC on the VXLAN port; when the instance moves here (evacuation, failover)
that learned entry would keep sending its frames back into the tunnel for up to the ageing time (300 s)
unless the instance happens to speak first. A static entry on the local port replaces the learned one
at once, and goes away with the veth. It is also sticky: frames with the same source MAC arriving
through the tunnel (a stale copy on a host that is back but not fenced yet) cannot move it.
"""

from __future__ import annotations

from pyroute2.netlink.rtnl.ndmsg import flags as nd_flags
from pyroute2.netlink.rtnl.ndmsg import states as nd_states

from atoll.agent.net.netlink import Link, Netlink, _call


def pin_mac(ipr: Netlink, port: Link, bridge: Link, mac: str) -> None:
    _call(
        f"pin {mac} to {port.name}",
        ipr.fdb,
        "replace",
        ifindex=port.index,
        lladdr=mac,
        master=bridge.index,
        state=nd_states["noarp"],
        flags=nd_flags["master"] | nd_flags["sticky"],
    )
