"""``docker top`` and ``docker stats`` of one container, read on its host.

Top runs the host's ``ps`` and keeps the rows whose PID is in the container's cgroup, as dockerd does,
so any ``ps`` options work and the image needs no ``ps`` of its own. Stats read the cgroup's counters
and ``/proc/stat`` (the host's CPU time, against which a container's CPU delta becomes a share).
"""

from __future__ import annotations

import asyncio
import os
import shlex

from atoll.agent.runtime.cgroups import CgroupReader
from atoll.model.clock import utcnow
from atoll.model.errors import InvalidInput, RuntimeFailure
from atoll.model.usage import InstanceStats, ProcessTable


async def process_table(pids: list[int], ps_args: str) -> ProcessTable:
    args = shlex.split(ps_args or "-ef")
    proc = await asyncio.create_subprocess_exec(
        "ps",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise InvalidInput(f"ps_args: ps {ps_args}: {err.decode(errors='replace').strip()}")
    lines = out.decode(errors="replace").splitlines()
    if not lines:
        raise RuntimeFailure("ps printed nothing")
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidInput(f"ps_args: the output of ps {ps_args} has no PID column")
    at = titles.index("PID")
    wanted = {str(p) for p in pids}
    rows = []
    for line in lines[1:]:
        # The last column (the command) may contain spaces: split only as many times as there are titles.
        fields = line.split(None, len(titles) - 1)
        if len(fields) > at and fields[at] in wanted:
            rows.append(fields)
    return ProcessTable(titles=titles, processes=rows)


def _system_cpu_ns() -> int:
    with open("/proc/stat") as f:
        first = f.readline().split()
    tick = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)
    return sum(int(v) for v in first[1:8]) * tick


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


NET_DEV_FIELDS = {0: "rx_bytes", 1: "rx_packets", 2: "rx_errors", 3: "rx_dropped",
                  8: "tx_bytes", 9: "tx_packets", 10: "tx_errors", 11: "tx_dropped"}  # fmt: skip
"""Columns of ``/proc/net/dev`` (after the interface name) and Docker's names for them."""


def read_net_dev(pid: int) -> dict[str, dict[str, int]]:
    """The counters of every interface but ``lo`` in ``pid``'s network namespace: ``/proc/<pid>/net/dev``
    shows that namespace's table, so no ``setns`` is needed. Empty if the process is gone."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return {}
    out: dict[str, dict[str, int]] = {}
    for line in lines:
        name, _, counters = line.partition(":")
        name = name.strip()
        values = counters.split()
        if name == "lo" or len(values) < 16:
            continue
        out[name] = {key: int(values[i]) for i, key in NET_DEV_FIELDS.items()}
    return out


def read_stats(cgroup: CgroupReader, pid: int = 0) -> InstanceStats:
    user, system = cgroup.cpu_split_ns()
    return InstanceStats(
        read=utcnow(),
        cpu_total_ns=cgroup.cpu_usage_ns(),
        cpu_user_ns=user,
        cpu_system_ns=system,
        system_cpu_ns=_system_cpu_ns(),
        online_cpus=len(os.sched_getaffinity(0)) or 1,
        memory_usage=cgroup.memory_usage(),
        memory_limit=cgroup.memory_limit() or _host_memory(),
        memory_inactive_file=cgroup.memory_inactive_file(),
        pids_current=cgroup.pids_current(),
        pids_limit=cgroup.pids_max(),
        networks=read_net_dev(pid) if pid else {},
    )
