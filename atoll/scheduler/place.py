"""Placement: filter, score, choose; and batches that see their own claims.

`place` is a pure function of a snapshot. Atomic claims come from the caller: the controller takes its
placement lock (or a row lock in one transaction), snapshots usage, calls `place_many` for everything
pending, and writes the claims back before releasing it. Because `place_many` adds each placement to the
usage before the next request is considered, a batch can never over-book a host, whatever its order.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from atoll.scheduler.filters import FILTERS, NOTHING, Filter, run_filters
from atoll.scheduler.model import HostCapacity, HostUsage, NoHostFits, Overcommit, Placement, Request
from atoll.scheduler.scores import score

TOP_SCORES = 5
"""How many scores a `Placement` keeps: enough to explain a choice, small enough for big batches."""


def place(
    request: Request,
    hosts: Sequence[HostCapacity],
    usage: Mapping[str, HostUsage],
    overcommit: Overcommit | None = None,
    filters: Sequence[Filter] = FILTERS,
) -> Placement:
    """Choose a host for `request`, or raise `NoHostFits` saying which filter rejected how many hosts."""
    oc = overcommit if overcommit is not None else Overcommit()
    passed = run_filters(request, hosts, usage, oc, filters)
    if not passed.accepted:
        raise NoHostFits(passed.rejected)
    scored = [(-score(request, h, usage.get(h.id, NOTHING), oc), h.id) for h in passed.accepted]
    top = heapq.nsmallest(TOP_SCORES, scored)
    return Placement(host_id=top[0][1], scores={host_id: -neg for neg, host_id in top})


@dataclass(frozen=True, slots=True)
class Batch:
    """One result per request, in order, and the usage with every successful placement applied.

    The caller decides between all-or-nothing (reject the batch if any `NoHostFits`) and best effort.
    """

    results: tuple[Placement | NoHostFits, ...]
    usage: Mapping[str, HostUsage]

    @property
    def placed(self) -> int:
        return sum(1 for r in self.results if isinstance(r, Placement))


def place_many(
    requests: Sequence[Request],
    hosts: Sequence[HostCapacity],
    usage: Mapping[str, HostUsage],
    overcommit: Overcommit | None = None,
    filters: Sequence[Filter] = FILTERS,
) -> Batch:
    """Place each request in order against the usage left by the ones before it."""
    current = dict(usage)
    results: list[Placement | NoHostFits] = []
    for request in requests:
        try:
            chosen = place(request, hosts, current, overcommit, filters)
        except NoHostFits as e:
            results.append(e)
            continue
        current[chosen.host_id] = current.get(chosen.host_id, HostUsage(chosen.host_id)).plus(request)
        results.append(chosen)
    return Batch(results=tuple(results), usage=current)
