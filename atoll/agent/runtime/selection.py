"""Choosing the OCI runtime at agent start: probe before choosing.

``auto`` prefers crun when a throwaway container with our real configuration actually runs under it;
on a cgroup v1 host crun runs with the agent's own cgroups (see ``owncgroups.py``), since its own
manager refuses hybrid hosts. Otherwise runc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
from pathlib import Path

from atoll.agent.runtime.cgroups import cgroup_version, hierarchies, remove_cgroup
from atoll.agent.runtime.initbin import ensure_launcher
from atoll.agent.runtime.oci import INIT_PATH, build_config
from atoll.agent.runtime.oci_runtime import OciRuntime
from atoll.agent.runtime.users import ResolvedUser
from atoll.model.errors import InvalidInput, RuntimeFailure
from atoll.model.instance import InstanceSpec, ProcessSpec

log = logging.getLogger(__name__)

_PROBE_TIMEOUT = 10.0


async def _probe(runtime: OciRuntime, init_binary: Path, scratch_dir: Path, cgroup_parent: str) -> None:
    """Run a throwaway container with our real config; raises RuntimeFailure if the runtime can't."""
    cid = f"atoll-probe-{secrets.token_hex(4)}"
    bundle = scratch_dir / cid
    cgroups_path = f"/{cgroup_parent.strip('/')}/{cid}"
    (bundle / "rootfs").mkdir(parents=True)
    try:
        spec = InstanceSpec(
            id=cid, name=cid, project="", image_id="", layers=[], process=ProcessSpec(args=["true"])
        )
        config = build_config(
            spec,
            rootfs=bundle / "rootfs",
            init_binary=init_binary,
            user=ResolvedUser(uid=0, gid=0),
            cgroups_path=cgroups_path,
        )
        config["process"]["args"] = [INIT_PATH, "--probe"]
        (bundle / "config.json").write_text(json.dumps(config))
        with open(bundle / "log", "ab") as logf, open(bundle / "exit", "wb") as exitf:
            await runtime.run_detached(
                cid, bundle, log_fd=logf.fileno(), exit_fd=exitf.fileno(), pid_file=bundle / "pid"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _PROBE_TIMEOUT
        while not await runtime._absent_or_stopped(cid):
            if loop.time() > deadline:
                raise RuntimeFailure(f"{runtime.name}: the probe container did not exit")
            await asyncio.sleep(0.01)
    finally:
        with contextlib.suppress(RuntimeFailure, OSError):
            await runtime.delete(cid, force=True)
        with contextlib.suppress(RuntimeFailure, OSError):
            remove_cgroup(cgroups_path)
        for mountpoint in set(hierarchies().values()):
            with contextlib.suppress(OSError):  # the parent too, if the probe made it (it is empty)
                (mountpoint / cgroup_parent.strip("/")).rmdir()
        shutil.rmtree(bundle, ignore_errors=True)


async def select_runtime(
    preference: str, root: Path, init_binary: Path, scratch_dir: Path, cgroup_parent: str
) -> OciRuntime:
    """The runtime to use. Each runtime keeps its state under ``root/<name>``, so that switching
    runtimes never makes one read the other's state.

    ``auto`` prefers crun (several times faster to start than runc, and smaller) when a probe container
    actually runs under it with our configuration on this host: first with crun's own cgroup manager
    (pure cgroup v2 hosts), then, on a cgroup v1 host, with the agent managing the cgroups (crun refuses
    v1 "hybrid" hosts itself); otherwise runc. ``crun`` picks the same way without probing.
    """
    if preference not in ("runc", "crun", "auto"):
        raise InvalidInput(f"runtime: unknown runtime {preference!r}; use runc, crun or auto")
    if preference == "runc":
        return _runc(root)
    crun = shutil.which("crun")
    if crun is None:
        if preference == "crun":
            raise RuntimeFailure("runtime: crun is not installed (not found on PATH)")
        return _runc(root, "crun is not installed")
    own = cgroup_version() == 1
    try:
        launcher = await asyncio.to_thread(ensure_launcher, init_binary.parent) if own else None
        candidate = OciRuntime("crun", crun, root / "crun", launcher=launcher)
        if preference == "crun":
            return candidate
        await _probe(candidate, init_binary, scratch_dir, cgroup_parent)
        return candidate
    except RuntimeFailure as exc:
        if preference == "crun":
            raise
        log.info("not using crun: %s", exc.message)
        return _runc(root, exc.message)


def _runc(root: Path, why_not_crun: str = "") -> OciRuntime:
    runc = shutil.which("runc")
    if runc is None:
        if why_not_crun:
            raise RuntimeFailure(f"runtime: neither crun nor runc is usable ({why_not_crun}; no runc)")
        raise RuntimeFailure("runtime: runc is not installed (not found on PATH)")
    return OciRuntime("runc", runc, root / "runc")
