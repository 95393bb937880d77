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


def read_stats(cgroup: CgroupReader) -> InstanceStats:
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
    )
