"""Fixtures for the runtime driver: a busybox root filesystem, real runc, and a leak check.

Every container, cgroup and directory a test makes carries this run's prefix. After each test the
harness kills and deletes its containers and removes its cgroups, then fails the test if anything it
made is still there (a container, a cgroup in any hierarchy, a mount, a process).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from atoll.agent.runtime.cgroups import CgroupReader, cgroup_version, hierarchies, remove_cgroup
from atoll.agent.runtime.exitfile import read_exit_file
from atoll.agent.runtime.initbin import ensure_init_binary, ensure_launcher
from atoll.agent.runtime.logs import read_log
from atoll.agent.runtime.oci import build_config
from atoll.agent.runtime.oci_runtime import OciRuntime
from atoll.agent.runtime.users import resolve_user
from atoll.agent.watch import exited
from atoll.model.instance import InstanceSpec, LogEntry, ProcessSpec, Resources
from tests.prefix import RUN_PREFIX

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nextra:x:2000:app\n"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")
needs_runc = pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")


def make_busybox_rootfs(root: Path) -> Path:
    """/bin/busybox with a symlink per applet, and account files with a user ``app`` (uid 1000)."""
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "home" / "app").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True)
    for name in applets.stdout.split():
        if name != "busybox" and "/" not in name:
            (root / "bin" / name).symlink_to("busybox")
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return root


@pytest.fixture(scope="session")
def init_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_init_binary(tmp_path_factory.mktemp("bin"))


@pytest.fixture(scope="session")
def busybox_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("template") / "rootfs")


@dataclass
class Container:
    id: str
    bundle: Path
    pid: int
    cgroups_path: str
    runtime: OciRuntime

    @property
    def log(self) -> Path:
        return self.bundle / "container.log"

    @property
    def exit_file(self) -> Path:
        return self.bundle / "exit"

    @property
    def cgroup(self) -> CgroupReader:
        return CgroupReader(self.cgroups_path)

    async def wait(self, timeout: float = 20.0) -> None:
        """Until the container's init has exited (a pidfd: it is not our child)."""
        await asyncio.wait_for(exited(self.pid), timeout)
        # The runtime reports "stopped" once the init is gone; give it that instant.
        for _ in range(100):
            state = await self.runtime.state(self.id)
            if state is None or state["status"] == "stopped":
                return
            await asyncio.sleep(0.01)

    def entries(self) -> list[LogEntry]:
        return read_log(self.log)

    def output(self, stream: str | None = None) -> bytes:
        return b"".join(e.data for e in self.entries() if stream is None or e.stream == stream)

    def exit_status(self) -> tuple[int, int] | None:
        return read_exit_file(self.exit_file)


@dataclass
class Harness:
    tmp: Path
    rootfs: Path
    init_binary: Path
    cgroup_parent: str
    runtime: OciRuntime
    containers: list[Container] = field(default_factory=list)

    def spec(
        self,
        args: Sequence[str],
        *,
        env: Sequence[str] = (),
        user: str = "",
        tty: bool = False,
        readonly: bool = False,
        hostname: str = "",
        cwd: str = "/",
        resources: Resources | None = None,
    ) -> InstanceSpec:
        cid = f"{RUN_PREFIX}-{secrets.token_hex(4)}"
        return InstanceSpec(
            id=cid,
            name=cid,
            project="test",
            image_id="",
            layers=[],
            process=ProcessSpec(args=list(args), env=list(env), cwd=cwd, user=user, tty=tty),
            hostname=hostname,
            readonly_rootfs=readonly,
            resources=resources or Resources(),
        )

    def config(self, spec: InstanceSpec) -> dict[str, Any]:
        return build_config(
            spec,
            rootfs=self.rootfs,
            init_binary=self.init_binary,
            user=resolve_user(self.rootfs, spec.process.user),
            cgroups_path=f"/{self.cgroup_parent}/{spec.id}",
        )

    async def start_spec(self, spec: InstanceSpec, config: dict[str, Any] | None = None) -> Container:
        bundle = self.tmp / spec.id
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(config or self.config(spec)))
        log_fd = os.open(
            bundle / "container.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
        )
        exit_fd = os.open(bundle / "exit", os.O_WRONLY | os.O_TRUNC | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            pid = await self.runtime.run_detached(
                spec.id, bundle, log_fd=log_fd, exit_fd=exit_fd, pid_file=bundle / "init.pid"
            )
        finally:
            os.close(log_fd)
            os.close(exit_fd)
        container = Container(spec.id, bundle, pid, f"/{self.cgroup_parent}/{spec.id}", self.runtime)
        self.containers.append(container)
        return container

    async def start(self, args: Sequence[str], **kw: Any) -> Container:
        return await self.start_spec(self.spec(args, **kw))

    async def run(self, args: Sequence[str], timeout: float = 20.0, **kw: Any) -> Container:
        """Start, wait for the end, and return the container (still known to the runtime)."""
        container = await self.start(args, **kw)
        await container.wait(timeout)
        return container


def _runc(runtime: OciRuntime, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*runtime.argv, *args], capture_output=True, text=True, check=False)


def _leftovers(harness: Harness) -> list[str]:
    problems: list[str] = []
    listed = _runc(harness.runtime, "list", "--format", "json")
    for item in json.loads(listed.stdout or "null") or []:
        problems.append(f"container {item['id']} ({item['status']})")
    for mountpoint in set(hierarchies().values()):
        if (mountpoint / harness.cgroup_parent).exists():
            problems.append(f"cgroup {mountpoint / harness.cgroup_parent}")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if str(harness.tmp) in line or harness.cgroup_parent in line:
                problems.append(f"mount {line.split()[4]}")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cgroups = (proc / "cgroup").read_text()
            # A zombie holds nothing but its pid; the host's init reaps exited container inits.
            zombie = (proc / "stat").read_text().rpartition(")")[2].split()[0] == "Z"
        except (OSError, IndexError):
            continue
        if harness.cgroup_parent in cgroups and not zombie:
            problems.append(f"process {proc.name}")
    return problems


def _teardown(harness: Harness) -> None:
    rt = harness.runtime
    listed = _runc(rt, "list", "--format", "json")
    for item in json.loads(listed.stdout or "null") or []:
        _runc(rt, "kill", item["id"], "KILL")
        _runc(rt, "delete", "--force", item["id"])
    deadline = time.monotonic() + 5
    while True:
        try:
            remove_cgroup(f"/{harness.cgroup_parent}")
            break
        except Exception:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)


def make_runtime(name: str, state: Path, init_binary: Path) -> OciRuntime:
    """runc, or crun as the agent drives it on this host (with its own cgroups on cgroup v1)."""
    binary = shutil.which(name)
    if binary is None:
        pytest.skip(f"{name} is not installed")
    launcher = ensure_launcher(init_binary.parent) if name == "crun" and cgroup_version() == 1 else None
    return OciRuntime(name, binary, state, launcher=launcher)


@pytest.fixture(params=["runc", "crun"])
def harness(
    request: pytest.FixtureRequest, tmp_path: Path, init_binary: Path, busybox_template: Path
) -> Iterator[Harness]:
    """Every runtime test runs under both runtimes."""
    if os.geteuid() != 0:
        pytest.skip("containers need root")
    runtime = make_runtime(request.param, tmp_path / "state", init_binary)
    rootfs = tmp_path / "rootfs"
    shutil.copytree(busybox_template, rootfs, symlinks=True)
    os.chown(rootfs / "home" / "app", 1000, 1000)
    h = Harness(
        tmp=tmp_path,
        rootfs=rootfs,
        init_binary=init_binary,
        cgroup_parent=f"{RUN_PREFIX}-{secrets.token_hex(3)}",
        runtime=runtime,
    )
    yield h
    _teardown(h)
    problems = _leftovers(h)
    if problems:
        pytest.fail("left behind: " + ", ".join(problems))
