"""What a host reports about a running instance's processes and resource use (``docker top``/``stats``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProcessTable:
    """``ps`` output for the instance's processes: column titles, then one row per process."""

    titles: list[str]
    processes: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class InstanceStats:
    """One sample of an instance's cgroup counters, with the host totals a CPU share is computed from."""

    read: str
    """RFC 3339 time of the sample."""
    cpu_total_ns: int
    cpu_user_ns: int
    cpu_system_ns: int
    system_cpu_ns: int
    """All CPUs of the host since boot (``/proc/stat``), to turn a delta of ``cpu_total_ns`` into a share."""
    online_cpus: int
    memory_usage: int
    memory_limit: int
    """The cgroup's limit, or the host's memory when it has none."""
    memory_inactive_file: int
    """Page cache that can be dropped; Docker's CLI subtracts it from the usage."""
    pids_current: int
    pids_limit: int
    """0: no limit."""
    networks: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per interface of the instance's network namespace (not ``lo``): ``rx_bytes``, ``rx_packets``,
    ``rx_errors``, ``rx_dropped`` and the same for ``tx_``, as Docker's stats name them."""
