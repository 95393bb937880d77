"""Small builders so each scheduler test states only what it is about."""

from __future__ import annotations

from atoll.scheduler.model import HostCapacity, HostState, HostUsage, PlacedInstance

GIB = 1 << 30


def host(
    id: str,
    cpu: int = 4000,
    mem_gib: int = 8,
    state: HostState = "ready",
    labels: dict[str, str] | None = None,
    kinds: frozenset[str] = frozenset({"container"}),
) -> HostCapacity:
    return HostCapacity(
        id=id,
        cpu_millis=cpu,
        memory_bytes=mem_gib * GIB,
        disk_bytes=100 * GIB,
        pids=10_000,
        labels=labels or {},
        kinds=kinds,
        state=state,
    )


def used(
    id: str, cpu: int = 0, mem_gib: int = 0, names: tuple[str, ...] = (), images: frozenset[str] = frozenset()
) -> HostUsage:
    return HostUsage(
        host_id=id,
        cpu_millis=cpu,
        memory_bytes=mem_gib * GIB,
        images=images,
        instances=tuple(PlacedInstance(n, {"role": n.split("-")[0]}) for n in names),
    )
