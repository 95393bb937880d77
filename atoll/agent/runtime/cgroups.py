"""Reading a container's cgroup, and removing cgroups the runtime left behind.

The runtime creates and configures the cgroups (cgroupfs driver, ``cgroupsPath = /<parent>/<id>``); this
module only reads counters and cleans up. It supports both layouts found in the field:

- cgroup v2 (``/sys/fs/cgroup`` is cgroup2): one directory per cgroup.
- cgroup v1, including "hybrid" hosts where a cgroup2 tree is also mounted (at
  ``/sys/fs/cgroup/unified``) but holds no controllers: one directory per controller hierarchy. The
  runtime also creates the cgroup in the empty v2 tree and in named hierarchies such as
  ``name=systemd``, which is why removal walks every mounted hierarchy, not only the controllers.

Hierarchies are found from ``/proc/self/mountinfo`` rather than assumed, because hosts differ
(``cpu,cpuacct`` joined or not). Counters read as 0 once a cgroup is gone, so callers racing a
container's removal get a number, not an exception.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from atoll.model.errors import RuntimeFailure

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNIFIED = ""  # key of the cgroup2 hierarchy in the mount table

_OCTAL = re.compile(r"\\([0-7]{3})")


def cgroup_version() -> int:
    """2 only on a pure cgroup v2 host; a hybrid host counts as 1 (its controllers are all v1)."""
    return 2 if (CGROUP_ROOT / "cgroup.controllers").exists() else 1


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def hierarchies() -> dict[str, Path]:
    """Controller (or ``name=...``, or ``""`` for cgroup2) -> mount point, for every mounted hierarchy."""
    out: dict[str, Path] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
        known = {row.split()[0] for row in Path("/proc/cgroups").read_text().splitlines()[1:] if row}
    except OSError:
        return out
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fstype, _source, *rest = right.split(" ")
        mountpoint = Path(_unescape(left.split(" ")[4]))
        if fstype == "cgroup2":
            out.setdefault(UNIFIED, mountpoint)
        elif fstype == "cgroup" and rest:
            for opt in rest[0].split(","):
                if opt in known or opt.startswith("name="):
                    out.setdefault(opt, mountpoint)
    return out


@dataclass(frozen=True)
class HostCgroups:
    """What the host's cgroups can enforce; decides which limits the OCI config may ask for."""

    version: int
    swap_accounting: bool
    """v1: ``memory.memsw.*`` exists (kernel booted with swap accounting); v2: ``memory.swap.max``."""


def detect_host_cgroups() -> HostCgroups:
    version = cgroup_version()
    mounts = hierarchies()
    if version == 1:
        memory = mounts.get("memory")
        swap = memory is not None and (memory / "memory.memsw.limit_in_bytes").exists()
        return HostCgroups(version=1, swap_accounting=swap)
    # The root cgroup has no memory.swap.max; any child with the memory controller does.
    swap = any(CGROUP_ROOT.glob("*/memory.swap.max"))
    return HostCgroups(version=2, swap_accounting=swap)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, ValueError):
        return ""


def _int(path: Path) -> int:
    text = _read(path).strip()
    return int(text) if text.isdigit() else 0


def _keyed(path: Path, key: str) -> int:
    for line in _read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value.strip())
    return 0


class CgroupReader:
    """Counters of one container's cgroup (``cgroups_path`` as given to the runtime)."""

    def __init__(self, cgroups_path: str) -> None:
        self.cgroups_path = cgroups_path
        rel = cgroups_path.strip("/")
        self._v2 = cgroup_version() == 2
        mounts = hierarchies()

        def where(controller: str) -> Path:
            base = mounts.get(UNIFIED if self._v2 else controller, CGROUP_ROOT / controller)
            return base / rel

        self._memory = where("memory")
        self._pids = where("pids")
        self._cpuacct = where("cpuacct")

    def exists(self) -> bool:
        return self._memory.is_dir() or self._pids.is_dir()

    def oom_kills(self) -> int:
        """Processes the kernel's OOM killer has killed in this cgroup (kernel >= 4.13 on v1)."""
        if self._v2:
            return _keyed(self._memory / "memory.events", "oom_kill")
        return _keyed(self._memory / "memory.oom_control", "oom_kill")

    def memory_usage(self) -> int:
        return _int(self._memory / ("memory.current" if self._v2 else "memory.usage_in_bytes"))

    def memory_limit(self) -> int:
        """0 when unlimited."""
        text = _read(self._memory / ("memory.max" if self._v2 else "memory.limit_in_bytes")).strip()
        if not text.isdigit() or int(text) >= 1 << 62:
            return 0
        return int(text)

    def memory_inactive_file(self) -> int:
        return _keyed(self._memory / "memory.stat", "inactive_file" if self._v2 else "total_inactive_file")

    def pids_max(self) -> int:
        """0 when unlimited."""
        return _int(self._pids / "pids.max")

    def cpu_split_ns(self) -> tuple[int, int]:
        """(user, system) CPU time."""
        if self._v2:
            stat = self._cpuacct / "cpu.stat"
            return _keyed(stat, "user_usec") * 1000, _keyed(stat, "system_usec") * 1000
        tick = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)
        stat = self._cpuacct / "cpuacct.stat"
        return _keyed(stat, "user") * tick, _keyed(stat, "system") * tick

    def pids_current(self) -> int:
        return _int(self._pids / "pids.current")

    def pids_refused(self) -> int:
        """Forks the kernel refused because the cgroup was at its pids limit (``pids.events``)."""
        return _keyed(self._pids / "pids.events", "max")

    def cpu_usage_ns(self) -> int:
        if self._v2:
            return _keyed(self._cpuacct / "cpu.stat", "usage_usec") * 1000
        return _int(self._cpuacct / "cpuacct.usage")

    def procs(self) -> list[int]:
        text = _read((self._memory if self._memory.is_dir() else self._pids) / "cgroup.procs")
        return [int(p) for p in text.split() if p.isdigit()]


def _rmtree_cgroup(top: Path) -> list[str]:
    """rmdir ``top`` and every cgroup below it, deepest first (cgroup files cannot be unlinked)."""
    busy: list[str] = []
    if not top.is_dir():
        return busy
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass
        except OSError as exc:
            busy.append(f"{dirpath}: {exc.strerror}")
    return busy


def remove_cgroup(cgroups_path: str) -> None:
    """Remove a cgroup (and any below it) from every hierarchy. Idempotent.

    Raises RuntimeFailure if a cgroup still holds processes; the caller retries on its next pass.
    """
    rel = cgroups_path.strip("/")
    if not rel or ".." in rel.split("/"):
        raise ValueError(f"refusing to remove cgroup {cgroups_path!r}")
    busy: list[str] = []
    for mountpoint in set(hierarchies().values()):
        busy += _rmtree_cgroup(mountpoint / rel)
    if busy:
        raise RuntimeFailure("cannot remove cgroup: " + "; ".join(busy))


def list_cgroups(parent: str) -> list[str]:
    """The cgroups directly below ``/<parent>``, as ``/<parent>/<name>`` (to find leftovers)."""
    rel = parent.strip("/")
    mounts = hierarchies()
    keys = [UNIFIED] if cgroup_version() == 2 else ["memory", "pids"]
    names: set[str] = set()
    for key in keys:
        base = mounts.get(key)
        if base is None:
            continue
        try:
            names.update(e.name for e in os.scandir(base / rel) if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            continue
    return sorted(f"/{rel}/{name}" for name in names)
