"""Scores: among hosts that passed every filter, which one is best. Higher is better.

The total is `strategy + image bonus + soft affinity`:
- strategy is in [0, 1]. It is computed from the dominant resource share *after* placement (the largest of
  used/limit across cpu, memory, disk, pids), because the scarcest resource decides how much more a host
  can take. Binpack scores that share (fill the fullest host that still fits, so empty hosts can be
  released); spread scores 1 - share (the emptiest host, for blast radius and headroom).
- the image bonus (0.05) breaks near-ties toward hosts that already hold the image, saving a pull, without
  overriding packing.
- each satisfied soft rule adds 2.0 (and each broken soft rule adds nothing), so a user's stated preference
  always outweighs the strategy, as a hard rule would, but never makes a host unacceptable.
Ties go to the smallest host id, so the same inputs always give the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping

from atoll.scheduler.affinity import affinity_holds
from atoll.scheduler.model import HostCapacity, HostUsage, Overcommit, Request

IMAGE_BONUS = 0.05
SOFT_RULE_WEIGHT = 2.0


def dominant_share(request: Request, host: HostCapacity, used: HostUsage, oc: Overcommit) -> float:
    """max((used + request) / limit) over resources with a non-zero limit; 0.0 if there are none.

    Unrolled for speed, like `filters.first_shortfall`.
    """
    share = 0.0
    limit = host.cpu_millis * oc.cpu
    if limit > 0:
        share = (used.cpu_millis + request.cpu_millis) / limit
    limit = host.memory_bytes * oc.memory
    if limit > 0 and (s := (used.memory_bytes + request.memory_bytes) / limit) > share:
        share = s
    limit = host.disk_bytes * oc.disk
    if limit > 0 and (s := (used.disk_bytes + request.disk_bytes) / limit) > share:
        share = s
    limit = host.pids * oc.pids
    if limit > 0 and (s := (used.pids + request.pids) / limit) > share:
        share = s
    return share


def binpack_score(request: Request, host: HostCapacity, used: HostUsage, overcommit: Overcommit) -> float:
    return min(1.0, dominant_share(request, host, used, overcommit))


def spread_score(request: Request, host: HostCapacity, used: HostUsage, overcommit: Overcommit) -> float:
    return max(0.0, 1.0 - dominant_share(request, host, used, overcommit))


def image_score(request: Request, used: HostUsage) -> float:
    return IMAGE_BONUS if request.image and request.image in used.images else 0.0


def soft_affinity_score(request: Request, used: HostUsage) -> float:
    return SOFT_RULE_WEIGHT * sum(
        1 for r in request.affinities if not r.hard and affinity_holds(r, used.instances)
    )


def score(request: Request, host: HostCapacity, used: HostUsage, overcommit: Overcommit) -> float:
    strategy = binpack_score if request.strategy == "binpack" else spread_score
    total = strategy(request, host, used, overcommit) + image_score(request, used)
    if request.affinities:
        total += soft_affinity_score(request, used)
    return total


def best(scores: Mapping[str, float]) -> str:
    """The highest score, ties to the smallest host id."""
    return min(scores.items(), key=lambda item: (-item[1], item[0]))[0]
