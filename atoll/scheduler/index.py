"""An index over a fleet, so a placement looks at a few hosts instead of all of them.

`place` scans every host for every request: about 2 us per host per phase in CPython, so 10,000 hosts cap
it near 50 placements per second. `FleetIndex` keeps the ready hosts in three sorted lists, by free CPU,
by free memory (`capacity x overcommit - claimed`) and by dominant share claimed (the largest of
claimed / limit), and updates them as it claims. For a request it walks one list:
- binpack: the list of the resource the request needs most of (relative to an average host), from the
  tightest fit upwards (`bisect` to the first host with enough of it: best fit);
- spread: the dominant-share list from the emptiest host upwards, which is how spread scores hosts;
and stops after `sample` feasible hosts (or `max_scan` hosts looked at), as Kubernetes' scheduler scores
only `percentageOfNodesToScore` of the feasible nodes. The candidates found are scored exactly as `place`
scores them, so among them the choice is the same.

What does not change: every candidate passes every filter (state, kind, constraints, hard affinity,
capacity via `filters.first_shortfall`), so an indexed placement is always a valid one and never
over-commits. What is delegated to the exact `place`: requests whose best host the index cannot find
(affinity `==` and soft rules, which score hosts by what runs there, not by free room), and any request
for which the bounded walk found no candidate, so `NoHostFits` and its per-filter counts are exactly those
of the linear scan. The result is then a valid placement, not always the one `place` would choose:
the best of a sample instead of the best of all.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from atoll.scheduler.affinity import affinity_holds, constraint_holds
from atoll.scheduler.filters import NOTHING, first_shortfall
from atoll.scheduler.model import HostCapacity, HostUsage, NoHostFits, Overcommit, Placement, Request
from atoll.scheduler.place import TOP_SCORES, Batch, place
from atoll.scheduler.scores import dominant_share, score

SAMPLE = 8
"""Feasible hosts scored per placement; more packs a little tighter, fewer is faster."""

MAX_SCAN = 512
"""Hosts looked at before settling for the candidates found so far (or the exact scan, if none)."""

NO_REQUEST = Request(0, 0)

Entry = tuple[float, str]
"""(free amount, host id): ties sort by host id, so the walk is deterministic."""


@dataclass(frozen=True, slots=True)
class _Free:
    cpu: float
    memory: float
    share: float
    """The dominant share already claimed (max of used/limit): what spread ranks hosts by."""


def _needs_exact(request: Request) -> bool:
    """Rules that prefer or require hosts by what runs on them: free room says nothing about those."""
    return any(not r.hard or r.op == "==" for r in request.affinities)


class FleetIndex:
    """Hosts sorted by free CPU, free memory and claimed share, and the claims made so far (`usage`)."""

    def __init__(
        self,
        hosts: Sequence[HostCapacity],
        usage: Mapping[str, HostUsage],
        overcommit: Overcommit | None = None,
        *,
        sample: int = SAMPLE,
        max_scan: int = MAX_SCAN,
    ) -> None:
        self.hosts = list(hosts)
        self.overcommit = overcommit if overcommit is not None else Overcommit()
        self.usage: dict[str, HostUsage] = dict(usage)
        self.sample = max(1, sample)
        self.max_scan = max(self.sample, max_scan)
        self._by_id = {h.id: h for h in self.hosts}
        self._free: dict[str, _Free] = {}
        self._by_cpu: list[Entry] = []
        self._by_memory: list[Entry] = []
        self._by_share: list[Entry] = []
        ready = [h for h in self.hosts if h.state == "ready"]
        for h in ready:
            free = self._free_of(h)
            self._free[h.id] = free
            self._by_cpu.append((free.cpu, h.id))
            self._by_memory.append((free.memory, h.id))
            self._by_share.append((free.share, h.id))
        self._by_cpu.sort()
        self._by_memory.sort()
        self._by_share.sort()
        n = len(ready) or 1
        # An average host's limits: a request's share of them says which resource binds it.
        self._mean_cpu = sum(h.cpu_millis for h in ready) * self.overcommit.cpu / n or 1.0
        self._mean_memory = sum(h.memory_bytes for h in ready) * self.overcommit.memory / n or 1.0

    def _free_of(self, host: HostCapacity) -> _Free:
        used = self.usage.get(host.id, NOTHING)
        oc = self.overcommit
        return _Free(
            cpu=host.cpu_millis * oc.cpu - used.cpu_millis,
            memory=host.memory_bytes * oc.memory - used.memory_bytes,
            share=dominant_share(NO_REQUEST, host, used, oc),
        )

    def _fits(self, request: Request, host: HostCapacity) -> bool:
        """Every filter of `filters.FILTERS` but state (the lists hold ready hosts only)."""
        if request.kind not in host.kinds:
            return False
        if request.constraints and not all(constraint_holds(c, host.labels) for c in request.constraints):
            return False
        used = self.usage.get(host.id, NOTHING)
        if request.affinities and not all(
            affinity_holds(r, used.instances) for r in request.affinities if r.hard
        ):
            return False
        return first_shortfall(request, host, used, self.overcommit) is None

    def _walk(self, request: Request) -> Iterator[str]:
        """Host ids in the order the strategy wants them: for binpack, from where the binding resource
        just fits upwards; for spread, from the least claimed share upwards."""
        if request.strategy != "binpack":
            for _, host_id in self._by_share:
                yield host_id
            return
        by_cpu = request.cpu_millis / self._mean_cpu >= request.memory_bytes / self._mean_memory
        entries, want = (
            (self._by_cpu, request.cpu_millis) if by_cpu else (self._by_memory, request.memory_bytes)
        )
        # A request of 0 for the key resource fits even a host claimed beyond its limit.
        start = bisect_left(entries, (float(want), "")) if want > 0 else 0
        for i in range(start, len(entries)):
            yield entries[i][1]

    def candidates(self, request: Request) -> list[HostCapacity]:
        """Up to `sample` hosts that pass every filter, found within `max_scan` hosts of the walk."""
        found: list[HostCapacity] = []
        for scanned, host_id in enumerate(self._walk(request), 1):
            host = self._by_id[host_id]
            if self._fits(request, host):
                found.append(host)
                if len(found) >= self.sample:
                    break
            if scanned >= self.max_scan:
                break
        return found

    def place(self, request: Request) -> Placement:
        """Choose a host (not claimed yet: see `claim`), or raise `NoHostFits` with the exact counts."""
        found = [] if _needs_exact(request) else self.candidates(request)
        if not found:
            return place(request, self.hosts, self.usage, self.overcommit)
        oc = self.overcommit
        scored = [(-score(request, h, self.usage.get(h.id, NOTHING), oc), h.id) for h in found]
        top = heapq.nsmallest(TOP_SCORES, scored)
        return Placement(host_id=top[0][1], scores={host_id: -neg for neg, host_id in top})

    def claim(self, host_id: str, request: Request) -> None:
        """Add `request` to the host's claims and move the host to its new place in every list."""
        self.set_usage(host_id, self.usage.get(host_id, HostUsage(host_id)).plus(request))

    def set_usage(self, host_id: str, usage: HostUsage) -> None:
        """Replace the host's claims (e.g. an instance elsewhere was removed) and move the host to its
        new place in every list."""
        self.usage[host_id] = usage
        old = self._free.get(host_id)
        if old is None:  # not ready: not indexed
            return
        new = self._free_of(self._by_id[host_id])
        self._free[host_id] = new
        for entries, before, after in (
            (self._by_cpu, old.cpu, new.cpu),
            (self._by_memory, old.memory, new.memory),
            (self._by_share, old.share, new.share),
        ):
            if before != after:
                del entries[bisect_left(entries, (before, host_id))]
                insort(entries, (after, host_id))


def place_many_indexed(
    requests: Sequence[Request],
    hosts: Sequence[HostCapacity],
    usage: Mapping[str, HostUsage],
    overcommit: Overcommit | None = None,
    *,
    sample: int = SAMPLE,
    max_scan: int = MAX_SCAN,
) -> Batch:
    """`place_many` through a `FleetIndex`: same inputs, same kind of result, each request seeing the
    claims of the ones before it."""
    index = FleetIndex(hosts, usage, overcommit, sample=sample, max_scan=max_scan)
    results: list[Placement | NoHostFits] = []
    for request in requests:
        try:
            chosen = index.place(request)
        except NoHostFits as e:
            results.append(e)
            continue
        index.claim(chosen.host_id, request)
        results.append(chosen)
    return Batch(results=tuple(results), usage=index.usage)
