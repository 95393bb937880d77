"""Which host realises each router: its network node.

A router's addresses (the gateways of its subnets, its external address, its floating IPs) must exist
once in the cloud, so a router is realised on exactly one host, the one in ``routers.host_id``:

- **Chosen** when the router is created, among the hosts that are ``ready`` and not drained: first the
  hosts that reported the external network's uplink interface among their networks (a router's gateway
  leg needs it), then the host with the fewest routers, then the lowest id (so the choice is stable).
- **Kept** while that host is ``ready`` (a drained host keeps its routers: draining stops new
  placements, it does not move what runs).
- **Rebound** when its host is gone (removed) or not ready (down, offline): the next time any host asks
  for its routers (every reconcile) the controller picks another host, and nudges every host, so the new
  one realises the router and the others point the router's MACs on overlay networks at it. The old host,
  if it comes back, no longer gets the router and removes it (level-triggered, like everything else).
- With no ready host at all (a fresh single-node cloud whose agent has not registered yet), a router stays
  unbound until a host asks; the asking host is then a candidate too.

Other hosts reach a router's legs on overlay networks like any port: ``services/overlay.py`` puts the
legs' MACs in every host's forwarding entries with the router's host as their destination. Floating IPs
and SNAT therefore work for instances on any host, through the one router.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.model.routing import RouterSpec
from atoll.services.hosts import READY
from atoll.services.routerviews import gateway, router_spec
from atoll.store.cluster import ClusterHostRow
from atoll.store.models import HostRow, NetworkRow
from atoll.store.overlaynet import HostCidrRow
from atoll.store.routing import RouterRow


def _ready(s: Session) -> set[str]:
    return set(s.scalars(select(HostRow.id).where(HostRow.state == READY)))


def _candidates(s: Session, ready: set[str]) -> list[str]:
    drained = set(s.scalars(select(ClusterHostRow.host_id).where(ClusterHostRow.drained.is_(True))))
    return sorted(ready - drained) or sorted(ready)


def _uplink(s: Session, router: RouterRow) -> str:
    gw = gateway(s, router)
    if gw is None:
        return ""
    network = s.get(NetworkRow, gw[0].network_id)
    return network.uplink if network is not None else ""


def choose(s: Session, router: RouterRow, candidates: list[str], load: Counter[str]) -> str | None:
    """The host for ``router`` among ``candidates`` (see the module's docstring); None without any."""
    if not candidates:
        return None
    uplink = _uplink(s, router)
    has_uplink: set[str] = set()
    if uplink:
        has_uplink = set(
            s.scalars(
                select(HostCidrRow.host_id).where(
                    HostCidrRow.interface == uplink, HostCidrRow.host_id.in_(candidates)
                )
            )
        )
    return min(candidates, key=lambda h: (h not in has_uplink, load[h], h))


def bind(s: Session, router: RouterRow) -> None:
    """Bind a new router (in its creating transaction) to a host, if one is ready."""
    candidates = _candidates(s, _ready(s))
    router.host_id = choose(s, router, candidates, _load(s))


def _load(s: Session) -> Counter[str]:
    return Counter(h for h in s.scalars(select(RouterRow.host_id)) if h is not None)


def rebind(s: Session, asking_host: str = "") -> list[str]:
    """Bind every router whose host is not ready (or that has none) to a ready host; ``asking_host`` is
    alive (it is asking) and counts as ready. Returns the ids of the routers that moved."""
    ready = _ready(s) | ({asking_host} if asking_host else set())
    stranded = [
        row
        for row in s.scalars(select(RouterRow).order_by(RouterRow.id))
        if row.host_id is None or row.host_id not in ready
    ]
    if not stranded:
        return []
    candidates = _candidates(s, ready)
    load = _load(s)
    moved = []
    for row in stranded:
        host = choose(s, row, candidates, load)
        if host is not None and host != row.host_id:
            if row.host_id is not None:
                load[row.host_id] -= 1
            row.host_id = host
            load[host] += 1
            moved.append(row.id)
    return moved


def router_specs_for_host(s: Session, host_id: str) -> list[RouterSpec]:
    """The routers ``host_id`` realises."""
    rows = s.scalars(select(RouterRow).where(RouterRow.host_id == host_id).order_by(RouterRow.id))
    return [router_spec(s, row) for row in rows]
