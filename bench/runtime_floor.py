"""The floor the OCI runtime puts under `docker run`: what one container costs the runtime alone.

Only what one `docker run --rm busybox true` needs of the runtime (create + start + wait for the exit +
delete) and what one `docker run -d busybox sleep 1d` needs (create + start, back when it runs), on a
root filesystem prepared beforehand (a plain directory: no image, no overlay, no network work), median
of N after a warm-up, as wall time and as CPU time (ours plus every process we waited for):

- ``agent``: the runtime ``atoll up`` picks on this host (``select_runtime("auto")``: crun through
  ``atoll-launch`` on a cgroup v1 host, else runc) with the bundle the agent writes (``build_config``:
  atoll-init as process 1, seccomp, capabilities, masked paths, resource limits in cgroups it makes,
  joining a network namespace made beforehand, as the agent's containers join the one it wired),
  driven by the agent's own wrapper (``OciRuntime.run_detached``, a pidfd wait for the exit, ``delete``).
- ``oneshot``: the same binary and bundle, the fastest way the runtime allows: one foreground ``run``
  process does create, start, wait and delete (cgroups made and removed around it, as the agent would).
- ``runc_minimal`` / ``crun_minimal``: the absolute floor: ``runc spec``'s default bundle (no seccomp)
  without its network namespace and with no resource limits, one foreground ``run`` (crun with its
  cgroup manager disabled: no cgroups at all, which no real container would do; on a cgroup v1 host
  behind ``atoll-launch -m``, which only hides the cgroup2 controllers, or crun refuses the host).

Every container goes under the cgroup parent ``atoll-bench-floor-<random>`` and a temp dir, and the
agent-bundle ones join the network namespace of the same name; all are removed at the end. Run as
root: ``.venv/bin/python -m bench.runtime_floor [--runs 20]``; the last line is one JSON object.
bench/docker_compare.py reports ``runtime_floor_ms`` (the faster of ``agent`` and ``oneshot``: the
least a daemon using this runtime with Atoll's bundle can spend on a `run --rm`) and
``runtime_floor_detached_ms`` (``agent`` detached: create + start is what `run -d` needs), and their
CPU times (``runtime_floor_cpu_ms``, ``runtime_floor_detached_cpu_ms``). The wall times follow the
machine's load; the CPU times (which on an idle machine bound the wall time from below) are the
steadier figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from atoll.agent.images.starter import busybox_rootfs_tar
from atoll.agent.runtime.cgroups import cgroup_version, hierarchies, remove_cgroup
from atoll.agent.runtime.initbin import ensure_init_binary, ensure_launcher
from atoll.agent.runtime.oci import build_config
from atoll.agent.runtime.oci_runtime import OciRuntime
from atoll.agent.runtime.owncgroups import OwnCgroups
from atoll.agent.runtime.selection import select_runtime
from atoll.agent.runtime.users import ResolvedUser
from atoll.agent.watch import exited
from atoll.model.instance import InstanceSpec, ProcessSpec

Sample = tuple[float, float]
"""(wall seconds, CPU seconds) of one operation."""


def _cpu() -> float:
    """CPU time of this process and of every child it has waited for (the runtime processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _spawn_wait(argv: list[str], errors: Path, fds: tuple[int, ...] = ()) -> None:
    """Run ``argv`` with stdin and stdout on /dev/null, stderr to ``errors`` and ``fds`` as 3, 4, ...;
    raise with its error output if it fails."""
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, str(errors), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        *((os.POSIX_SPAWN_DUP2, fd, 3 + k) for k, fd in enumerate(fds)),
    ]
    pid = os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=actions, setsid=True)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        code = os.waitstatus_to_exitcode(status)
        raise RuntimeError(f"{' '.join(argv)}: {code}: {errors.read_text(errors='replace').strip()}")


def _rootfs(dest: Path) -> Path:
    """The starter image's busybox root filesystem, unpacked once into a plain directory."""
    tar_path = dest.parent / "busybox.tar"
    busybox_rootfs_tar(tar_path)
    dest.mkdir()
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="tar")
    return dest


class Bench:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.parent = f"atoll-bench-floor-{uuid.uuid4().hex[:6]}"
        self.rootfs = _rootfs(base / "rootfs")
        self.init = ensure_init_binary(base / "bin")
        self.netns_name = self.parent
        subprocess.run(["ip", "netns", "add", self.netns_name], check=True)
        self.netns = Path("/run/netns") / self.netns_name
        self.n = 0

    def cid(self) -> str:
        self.n += 1
        return f"floor-{self.n}"

    def agent_config(self, cid: str, args: list[str]) -> dict[str, Any]:
        spec = InstanceSpec(
            id=cid, name=cid, project="", image_id="", layers=[], process=ProcessSpec(args=args)
        )
        return build_config(
            spec,
            rootfs=self.rootfs,
            init_binary=self.init,
            user=ResolvedUser(uid=0, gid=0),
            cgroups_path=f"/{self.parent}/{cid}",
            netns=self.netns,
        )

    def bundle(self, cid: str, config: dict[str, Any]) -> Path:
        bundle = self.base / "bundles" / cid
        bundle.mkdir(parents=True)
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    def close(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.netns_name], check=False)
        for mountpoint in set(hierarchies().values()):
            top = mountpoint / self.parent
            if top.is_dir():
                for child in top.iterdir():
                    if child.is_dir():
                        with contextlib.suppress(OSError):
                            child.rmdir()
                with contextlib.suppress(OSError):
                    top.rmdir()


async def _timed(op: Callable[[], Awaitable[None]]) -> Sample:
    c0, t0 = _cpu(), time.perf_counter()
    await op()
    return time.perf_counter() - t0, _cpu() - c0


class AgentPath:
    """The agent's runtime and wrapper, as ``atoll up`` drives them."""

    def __init__(self, bench: Bench, runtime: OciRuntime) -> None:
        self.bench = bench
        self.runtime = runtime

    async def _start(self, args: list[str]) -> tuple[str, int]:
        cid = self.bench.cid()
        bundle = self.bench.bundle(cid, self.bench.agent_config(cid, args))
        with open(bundle / "log", "ab") as logf, open(bundle / "exit", "wb") as exitf:
            pid = await self.runtime.run_detached(
                cid, bundle, log_fd=logf.fileno(), exit_fd=exitf.fileno(), pid_file=bundle / "pid"
            )
        return cid, pid

    async def run_rm(self) -> Sample:
        async def op() -> None:
            cid, pid = await self._start(["true"])
            await exited(pid)
            await self.runtime.delete(cid)

        return await _timed(op)

    async def run_detached(self) -> Sample:
        started: list[str] = []

        async def op() -> None:
            started.append((await self._start(["sleep", "86400"]))[0])

        sample = await _timed(op)
        await self.runtime.delete(started[0], force=True)  # untimed: `docker rm -f` is another command
        return sample


class OneShot:
    """The same runtime binary and bundle, one foreground ``run`` (create, start, wait, delete)."""

    def __init__(self, bench: Bench, runtime: OciRuntime) -> None:
        self.bench = bench
        self.runtime = runtime

    async def run_rm(self) -> Sample:
        cid = self.bench.cid()
        config = self.bench.agent_config(cid, ["true"])
        bundle = self.bench.bundle(cid, config)

        async def op() -> None:
            cgroup = None
            if self.runtime.own_cgroups:
                cgroup = OwnCgroups(config["linux"]["cgroupsPath"])
                cgroup.create(config["linux"].get("resources") or {})
            argv = [
                *self.runtime._launch_argv(cgroup, hide_controllers=True),
                "run", "--preserve-fds", "2", "--bundle", str(bundle), cid,
            ]  # fmt: skip
            with open(bundle / "log", "ab") as logf, open(bundle / "exit", "wb") as exitf:
                _spawn_wait(argv, bundle / "stderr", (logf.fileno(), exitf.fileno()))
            if cgroup is not None:
                remove_cgroup(f"/{cgroup.rel}")

        return await _timed(op)


class Minimal:
    """``runc spec``'s bundle without a network namespace or limits, one foreground ``run``."""

    def __init__(self, bench: Bench, binary: str) -> None:
        self.bench = bench
        self.binary = binary
        self.root = bench.base / f"{Path(binary).name}-root"
        scratch = bench.base / "spec"
        scratch.mkdir(exist_ok=True)
        if not (scratch / "config.json").exists():
            subprocess.run(["runc", "spec", "--bundle", str(scratch)], check=True)
        self.spec = json.loads((scratch / "config.json").read_text())
        self.spec["process"]["terminal"] = False
        self.spec["root"] = {"path": str(bench.rootfs), "readonly": True}
        linux = self.spec["linux"]
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        linux.pop("resources", None)

    @property
    def crun(self) -> bool:
        return Path(self.binary).name == "crun"

    def _argv(self, *args: str) -> list[str]:
        if not self.crun:
            return [self.binary, "--root", str(self.root), *args]
        argv = [self.binary, "--cgroup-manager=disabled", "--root", str(self.root), *args]
        if cgroup_version() == 1:  # crun refuses a hybrid host unless it sees no cgroup2 controllers
            return [str(ensure_launcher(self.bench.base / "bin")), "-m", "--", *argv]
        return argv

    async def run_rm(self) -> Sample:
        cid = self.bench.cid()
        spec = {**self.spec, "process": {**self.spec["process"], "args": ["true"]}}
        spec["linux"] = {**spec["linux"], "cgroupsPath": f"/{self.bench.parent}/{cid}"}
        bundle = self.bench.bundle(cid, spec)

        async def op() -> None:
            _spawn_wait(self._argv("run", "--bundle", str(bundle), cid), bundle / "stderr")

        sample = await _timed(op)
        with contextlib.suppress(Exception):
            remove_cgroup(f"/{self.bench.parent}/{cid}")
        return sample


async def _series(op: Callable[[], Awaitable[Sample]], runs: int) -> dict[str, float]:
    for _ in range(2):  # warm the page cache and the binaries
        await op()
    samples = [await op() for _ in range(runs)]
    return {
        "wall_ms": round(statistics.median(s[0] for s in samples) * 1000, 1),
        "cpu_ms": round(statistics.median(s[1] for s in samples) * 1000, 1),
    }


def _delete_leftovers(argv: list[str], root: Path) -> None:
    """A container a failed run left in ``root`` (none after a clean run)."""
    if root.is_dir():
        for leftover in root.iterdir():
            if leftover.is_dir():
                subprocess.run([*argv, "delete", "--force", leftover.name], capture_output=True, check=False)


async def _measure(base: Path, runs: int) -> dict[str, Any]:
    bench = Bench(base)
    runtime = await select_runtime("auto", base / "state", bench.init, base / "probe", bench.parent)
    agent, oneshot = AgentPath(bench, runtime), OneShot(bench, runtime)
    figures: dict[str, Any] = {"runtime": runtime.name, "cgroup_version": cgroup_version()}
    try:
        figures["agent_run_rm"] = await _series(agent.run_rm, runs)
        figures["agent_run_detached"] = await _series(agent.run_detached, runs)
        figures["oneshot_run_rm"] = await _series(oneshot.run_rm, runs)
        for binary in ("runc", "crun"):
            path = shutil.which(binary)
            if path is not None:
                figures[f"{binary}_minimal_run_rm"] = await _series(Minimal(bench, path).run_rm, runs)
    finally:
        _delete_leftovers(runtime.argv, runtime.root)
        _delete_leftovers(["runc", "--root", str(base / "runc-root")], base / "runc-root")
        _delete_leftovers(
            ["crun", "--cgroup-manager=disabled", "--root", str(base / "crun-root")], base / "crun-root"
        )
        bench.close()
    return figures


def measure_runtime_floor(runs: int) -> dict[str, Any]:
    """Every figure above, and the two docker_compare reports (``runtime_floor_ms``, ``_detached_ms``)."""
    with tempfile.TemporaryDirectory(prefix="atoll-bench-floor-") as tmp:
        figures = asyncio.run(_measure(Path(tmp), runs))
    both = (figures["oneshot_run_rm"], figures["agent_run_rm"])
    figures["runtime_floor_ms"] = min(f["wall_ms"] for f in both)
    figures["runtime_floor_cpu_ms"] = min(f["cpu_ms"] for f in both)
    figures["runtime_floor_detached_ms"] = figures["agent_run_detached"]["wall_ms"]
    figures["runtime_floor_detached_cpu_ms"] = figures["agent_run_detached"]["cpu_ms"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    if os.geteuid() != 0:
        sys.exit("run as root")
    print(json.dumps(measure_runtime_floor(parser.parse_args().runs)))


if __name__ == "__main__":
    main()
