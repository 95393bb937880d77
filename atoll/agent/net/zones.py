"""Conntrack zones: one per tenant bridge on a host, so that no two networks share a conntrack entry.

Why: with ``br_netfilter``, every packet bridged within a tenant bridge is tracked by the host's one
conntrack table. Two networks may use the same addresses (overlapping CIDRs in two projects, or in
one), so a flow of one network and a flow of another can have the same addresses and ports; in one
zone they are one entry, and the security groups' "replies pass" rule would let the second network's
packets through as if they belonged to the first's accepted flow (a test shows it:
``tests/net/test_ct_zones.py``). A zone per bridge keeps them apart; nftables sets it
(``ct zone set``) before conntrack sees the packet, and the fast path looks flows up in the same zone.

The numbers are the host's own (16 bits, 1 and up; 0 is the host's zone) and must stay put while
flows are open: an entry is found only in the zone it was made in, so a flow whose bridge changed
zones would be taken for a new one and judged again. So an agent started again takes the numbers its
predecessor left in the kernel (``adopt``), and a bridge keeps its zone for as long as it exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from atoll.model.errors import RuntimeFailure

FIRST = 1
LAST = 0xFFFF


class Zones:
    """The zone of each of the host's tenant bridges. Changed under the dataplane's lock; ``get`` may be
    called from any thread."""

    def __init__(self) -> None:
        self._zones: dict[str, int] = {}
        self.adopted = False
        """Whether the kernel's numbers (an earlier agent's) were taken in: once per agent."""

    def adopt(self, found: Mapping[str, int]) -> None:
        """Take the numbers an earlier agent left, for bridges not numbered here yet."""
        self.adopted = True
        taken = set(self._zones.values())
        for bridge, zone in sorted(found.items()):
            if bridge not in self._zones and FIRST <= zone <= LAST and zone not in taken:
                self._zones[bridge] = zone
                taken.add(zone)

    def assign(self, bridges: Iterable[str]) -> dict[str, int]:
        """Zones for exactly these bridges: those numbered keep their zone, the others get the lowest
        free ones, and the zones of bridges not named are freed."""
        wanted = set(bridges)
        zones = {b: z for b, z in self._zones.items() if b in wanted}
        taken = set(zones.values())
        free = (z for z in range(FIRST, LAST + 1) if z not in taken)
        for bridge in sorted(wanted - zones.keys()):
            zone = next(free, None)
            if zone is None:
                raise RuntimeFailure(
                    f"no conntrack zone left for bridge {bridge}: {LAST} bridges on one host"
                )
            zones[bridge] = zone
        self._zones = zones  # whole, at once: the fast path reads it from other threads
        return dict(zones)

    def get(self, bridge: str) -> int | None:
        return self._zones.get(bridge)
