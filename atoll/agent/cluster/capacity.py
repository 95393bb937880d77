"""What this host offers and uses, for heartbeats. Read from /proc and statvfs: cheap enough to run
every few seconds."""

from __future__ import annotations

import os
from pathlib import Path

from atoll.model.cluster import HostResources


def _meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = int(parts[0]) * 1024
    return out


def capacity(data_dir: Path) -> HostResources:
    disk = os.statvfs(data_dir)
    return HostResources(
        cpu_millis=(os.cpu_count() or 1) * 1000,
        memory_bytes=_meminfo().get("MemTotal", 0),
        disk_bytes=disk.f_blocks * disk.f_frsize,
        pids=int(Path("/proc/sys/kernel/pid_max").read_text()),
    )


def used(data_dir: Path) -> HostResources:
    mem = _meminfo()
    disk = os.statvfs(data_dir)
    load1 = os.getloadavg()[0]
    return HostResources(
        cpu_millis=int(load1 * 1000),
        memory_bytes=mem.get("MemTotal", 0) - mem.get("MemAvailable", 0),
        disk_bytes=(disk.f_blocks - disk.f_bfree) * disk.f_frsize,
        pids=sum(1 for name in os.listdir("/proc") if name.isdigit()),
    )
