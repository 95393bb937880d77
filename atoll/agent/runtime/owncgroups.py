"""Cgroups the agent makes and manages itself, for crun on cgroup v1 hosts.

Design: crun starts containers several times faster than runc, but its cgroup manager refuses this
kind of host (v1 controllers plus a cgroup2 tree holding a controller, the "hybrid" layout). So there
crun runs with ``--cgroup-manager=disabled`` and this module does what its manager would have done,
with the same paths runc uses (``/<parent>/<id>`` in every mounted hierarchy), so that reading
counters (``cgroups.CgroupReader``), OOM detection, stats, top and removal (``cgroups.remove_cgroup``)
work unchanged whichever runtime made the container:

- ``create`` makes the cgroup in every hierarchy (the v1 controllers, named ones like
  ``name=systemd``, and the cgroup2 tree), copying ``cpuset`` cpus/mems down from the parent (a new v1
  cpuset is empty and nothing could join it), and writes the OCI ``linux.resources``: the device
  allow-list (deny all, then the devices every container gets, as runc does), memory (+swap), CPU and
  pids. Limits are in place before any process of the container exists.
- ``procs_files`` names the ``cgroup.procs`` files that ``atoll-launch`` writes its own pid into
  before it execs crun; crun's children (the container's init, exec'd processes) inherit the cgroups
  at fork, so no process of the container ever runs outside its limits.
- ``update`` writes new limits into a running container's cgroup (``docker update``); memory and
  memory+swap are written in whichever order the kernel accepts (memsw may never be below memory).
- ``freeze`` / ``thaw`` use the v1 freezer (pause/unpause); ``pids`` lists every process (kill --all).

Only cgroup v1 is handled here: on a pure v2 host crun's own manager works and is used instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from pathlib import Path
from typing import Any

from atoll.agent.runtime.cgroups import UNIFIED, hierarchies
from atoll.model.errors import RuntimeFailure

# What runc and crun allow every container on top of the config's own list (char devices: null,
# zero, full, tty, random, urandom, console, ptmx, pts/*, tun; mknod of any device, never its use).
DEFAULT_DEVICE_RULES = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
)
_FREEZE_TIMEOUT = 10.0


def _write(path: Path, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise RuntimeFailure(f"cgroup {path}: cannot write {value!r}: {exc.strerror}") from None


def _device_rule(rule: dict[str, Any]) -> str:
    kind = rule.get("type") or "a"
    if kind == "a":
        return "a"
    major = "*" if rule.get("major") is None else rule["major"]
    minor = "*" if rule.get("minor") is None else rule["minor"]
    return f"{kind} {major}:{minor} {rule.get('access') or 'rwm'}"


def _own_cgroups() -> dict[str, str]:
    """Hierarchy key (as in ``cgroups.hierarchies``) -> this process's cgroup in it."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for key in controllers.split(",") if controllers else [UNIFIED]:
                out[key] = path
    return out


class OwnCgroups:
    """One container's cgroup (``cgroups_path`` as in the OCI config) on a v1 host."""

    def __init__(self, cgroups_path: str) -> None:
        rel = cgroups_path.strip("/")
        if not rel or ".." in rel.split("/"):
            raise RuntimeFailure(f"cgroup path {cgroups_path!r} is not allowed")
        self.rel = rel
        self._mounts = hierarchies()

    def _dir(self, key: str) -> Path | None:
        base = self._mounts.get(key)
        return None if base is None else base / self.rel

    def _dirs(self) -> list[Path]:
        return sorted({base / self.rel for base in self._mounts.values()})

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self._dirs()]

    def join_pairs(self) -> list[str]:
        """``IN:HOME`` per hierarchy for atoll-launch: the container's ``cgroup.procs`` and this
        process's own (where the runtime goes back to once an exec'd process exists)."""
        own = _own_cgroups()
        pairs: dict[Path, Path] = {}
        for key, base in self._mounts.items():
            home = base / own.get(key, "").lstrip("/") / "cgroup.procs"
            pairs.setdefault(base / self.rel / "cgroup.procs", home)
        return [f"{inside}:{home}" for inside, home in sorted(pairs.items())]

    def create(self, resources: dict[str, Any]) -> None:
        for d in self._dirs():
            d.mkdir(parents=True, exist_ok=True)
        if "cpuset" in self._mounts:
            self._fill_cpuset(self._mounts["cpuset"], self.rel)
        devices = self._dir("devices")
        if devices is not None:
            _write(devices / "devices.deny", "a")
            for rule in resources.get("devices") or []:
                if rule.get("allow"):
                    _write(devices / "devices.allow", _device_rule(rule))
            for text in DEFAULT_DEVICE_RULES:
                _write(devices / "devices.allow", text)
        self.update(resources)

    @staticmethod
    def _fill_cpuset(root: Path, rel: str) -> None:
        """A new v1 cpuset has no cpus and no mems; give each level its parent's, top down."""
        parent = root
        for part in rel.split("/"):
            d = parent / part
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not (d / name).read_text().strip():
                    _write(d / name, (parent / name).read_text().strip())
            parent = d

    def update(self, resources: dict[str, Any]) -> None:
        memory = resources.get("memory") or {}
        mem_dir = self._dir("memory")
        if memory and mem_dir is not None:
            limit = memory.get("limit")
            swap = memory.get("swap")
            steps = []
            if limit is not None:
                steps.append(("memory.limit_in_bytes", str(limit)))
            if swap is not None and (mem_dir / "memory.memsw.limit_in_bytes").exists():
                steps.append(("memory.memsw.limit_in_bytes", str(swap)))
            self._write_in_any_order(mem_dir, steps)
        cpu = resources.get("cpu") or {}
        cpu_dir = self._dir("cpu")
        if cpu and cpu_dir is not None:
            if cpu.get("shares"):
                _write(cpu_dir / "cpu.shares", str(cpu["shares"]))
            if cpu.get("period"):
                _write(cpu_dir / "cpu.cfs_period_us", str(cpu["period"]))
            if cpu.get("quota"):
                _write(cpu_dir / "cpu.cfs_quota_us", str(cpu["quota"]))
        pids = resources.get("pids") or {}
        pids_dir = self._dir("pids")
        if pids and pids_dir is not None:
            limit = int(pids.get("limit") or 0)
            _write(pids_dir / "pids.max", str(limit) if limit > 0 else "max")

    @staticmethod
    def _write_in_any_order(d: Path, steps: list[tuple[str, str]]) -> None:
        """memory.memsw must stay >= memory.limit: raising both needs memsw first, lowering both
        needs limit first. Try the given order, then the reverse."""
        try:
            for name, value in steps:
                _write(d / name, value)
        except RuntimeFailure:
            for name, value in reversed(steps):
                _write(d / name, value)

    def _freezer(self) -> Path:
        d = self._dir("freezer")
        if d is None or not d.is_dir():
            raise RuntimeFailure(f"cgroup /{self.rel}: no freezer hierarchy to pause with")
        return d

    def freeze(self) -> None:
        self._set_freezer("FROZEN")

    def thaw(self) -> None:
        self._set_freezer("THAWED")

    def _set_freezer(self, wanted: str) -> None:
        state = self._freezer() / "freezer.state"
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        while True:
            _write(state, wanted)  # FREEZING goes on in the kernel; writing again nudges it
            if state.read_text().strip() == wanted:
                return
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"cgroup /{self.rel}: still not {wanted} after {_FREEZE_TIMEOUT:g}s")
            time.sleep(0.001)

    def frozen(self) -> bool:
        d = self._dir("freezer")
        if d is None:
            return False
        try:
            return (d / "freezer.state").read_text().strip() != "THAWED"
        except OSError:
            return False

    def pids(self) -> list[int]:
        for key in ("pids", "freezer", "memory", UNIFIED):
            d = self._dir(key)
            if d is None:
                continue
            try:
                return [int(p) for p in (d / "cgroup.procs").read_text().split()]
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
        return []

    def kill_all(self, signum: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
