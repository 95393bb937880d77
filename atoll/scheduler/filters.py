"""Filters: each narrows the candidate hosts and counts, per reason, the hosts it turned away.

A host is charged to the first filter that rejects it, so the counts in `NoHostFits` add up to the
number of hosts. The cheap, coarse filters (state, kind) run first; capacity runs last and reports the
first resource that does not fit, in `RESOURCES` order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from atoll.scheduler.affinity import affinity_holds, constraint_holds
from atoll.scheduler.model import HostCapacity, HostUsage, Overcommit, Request


@dataclass(slots=True)
class FilterResult:
    accepted: list[HostCapacity]
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


Filter = Callable[[Request, Sequence[HostCapacity], Mapping[str, HostUsage], Overcommit], FilterResult]


NOTHING = HostUsage("")
"""Read-only stand-in for a host with no allocations; `place_many` creates real entries as it claims."""


def usage_of(usage: Mapping[str, HostUsage], host_id: str) -> HostUsage:
    """A host missing from `usage` has nothing allocated, so callers need not pre-fill every host."""
    return usage.get(host_id, NOTHING)


def state_filter(
    request: Request, hosts: Sequence[HostCapacity], usage: Mapping[str, HostUsage], overcommit: Overcommit
) -> FilterResult:
    """Only `ready` hosts take new instances: draining ones are being emptied, down ones are unreachable."""
    result = FilterResult([])
    for host in hosts:
        if host.state == "ready":
            result.accepted.append(host)
        else:
            result.reject(f"state {host.state}")
    return result


def kind_filter(
    request: Request, hosts: Sequence[HostCapacity], usage: Mapping[str, HostUsage], overcommit: Overcommit
) -> FilterResult:
    """A VM needs a host with KVM, a container a host with an OCI runtime."""
    result = FilterResult([])
    for host in hosts:
        if request.kind in host.kinds:
            result.accepted.append(host)
        else:
            result.reject(f"kind {request.kind}")
    return result


def constraint_filter(
    request: Request, hosts: Sequence[HostCapacity], usage: Mapping[str, HostUsage], overcommit: Overcommit
) -> FilterResult:
    """Host-label constraints; a host is charged to the first constraint it fails."""
    if not request.constraints:
        return FilterResult(list(hosts))
    result = FilterResult([])
    for host in hosts:
        failed = next((c for c in request.constraints if not constraint_holds(c, host.labels)), None)
        if failed is None:
            result.accepted.append(host)
        else:
            result.reject(f"constraint {failed}")
    return result


def affinity_filter(
    request: Request, hosts: Sequence[HostCapacity], usage: Mapping[str, HostUsage], overcommit: Overcommit
) -> FilterResult:
    """Hard affinity and anti-affinity against the instances already on (or claimed for) each host."""
    hard = [r for r in request.affinities if r.hard]
    if not hard:
        return FilterResult(list(hosts))
    result = FilterResult([])
    for host in hosts:
        instances = usage_of(usage, host.id).instances
        failed = next((r for r in hard if not affinity_holds(r, instances)), None)
        if failed is None:
            result.accepted.append(host)
        else:
            result.reject(f"affinity {failed}")
    return result


def first_shortfall(request: Request, host: HostCapacity, used: HostUsage, oc: Overcommit) -> str | None:
    """The first resource, in `RESOURCES` order, where `used + request` would exceed capacity x overcommit.

    Unrolled rather than a loop over vectors: this runs once per host per placement and dominates the cost.
    """
    want = request.cpu_millis
    if want and used.cpu_millis + want > host.cpu_millis * oc.cpu:
        return "cpu"
    want = request.memory_bytes
    if want and used.memory_bytes + want > host.memory_bytes * oc.memory:
        return "memory"
    want = request.disk_bytes
    if want and used.disk_bytes + want > host.disk_bytes * oc.disk:
        return "disk"
    want = request.pids
    if want and used.pids + want > host.pids * oc.pids:
        return "pids"
    return None


def capacity_filter(
    request: Request, hosts: Sequence[HostCapacity], usage: Mapping[str, HostUsage], overcommit: Overcommit
) -> FilterResult:
    """CPU, memory, disk and pids, each against capacity x its overcommit ratio."""
    result = FilterResult([])
    accept = result.accepted.append
    for host in hosts:
        short = first_shortfall(request, host, usage.get(host.id, NOTHING), overcommit)
        if short is None:
            accept(host)
        else:
            result.reject(short)
    return result


FILTERS: tuple[Filter, ...] = (state_filter, kind_filter, constraint_filter, affinity_filter, capacity_filter)
"""The order matters only for which reason a host is charged to; every filter must pass."""


def run_filters(
    request: Request,
    hosts: Sequence[HostCapacity],
    usage: Mapping[str, HostUsage],
    overcommit: Overcommit,
    filters: Sequence[Filter] = FILTERS,
) -> FilterResult:
    """Chain the filters; the result holds the survivors and every rejection reason with its count."""
    total = FilterResult(list(hosts))
    for f in filters:
        step = f(request, total.accepted, usage, overcommit)
        total.accepted = step.accepted
        for reason, n in step.rejected.items():
            total.rejected[reason] = total.rejected.get(reason, 0) + n
        if not total.accepted:
            break
    return total
