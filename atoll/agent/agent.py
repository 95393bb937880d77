"""The agent of one host: runs instances and holds their image content.

Design:
- Instances are started detached through the OCI runtime. Their process 1 is ``atoll-init``, which
  writes the log and the exit status itself, so no process of ours sits between a container and its
  output, and nothing is lost while the agent is down.
- Exits are noticed through pidfds (``watch.ExitWatcher``) and reported to the control plane, which
  decides on restarts; the agent only carries out the back-off timer.
- ``reconcile()`` is level-triggered and idempotent: it runs at start-up (adopting running containers,
  recording exits that happened while the agent was away) and then periodically, and it removes
  runtime state, mounts, cgroups and directories that no longer belong to any assignment.
- Operations on one instance are serialised by a per-instance lock; the lock is never held while
  talking to the control plane, which may call back into the agent (auto-remove).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine, Mapping
from dataclasses import asdict, dataclass, field, replace
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from atoll.agent import migration
from atoll.agent.etcfiles import write_etc_files
from atoll.agent.images.export import export_layout
from atoll.agent.images.overlay import is_mounted, mount_overlay, unmount
from atoll.agent.images.store import ImageStore
from atoll.agent.layout import InstanceLayout, instance_layout
from atoll.agent.mountview import ViewMount
from atoll.agent.net import bigtcp
from atoll.agent.net.dataplane import HostNetwork, NetConfig
from atoll.agent.net.dnsserver import NameService
from atoll.agent.net.names import DEFAULT_PREFIX, DEFAULT_TABLE, Names
from atoll.agent.net.netns import adopt as adopt_netns
from atoll.agent.net.netns import is_netns
from atoll.agent.net.overlaysync import OverlaySync
from atoll.agent.net.publish import DEFAULT_POOL
from atoll.agent.registry.options import RegistryOptions
from atoll.agent.registry.service import Registries
from atoll.agent.rootview import RootView
from atoll.agent.runtime.cgroups import (
    CgroupReader,
    cgroup_version,
    detect_host_cgroups,
    list_cgroups,
    remove_cgroup,
)
from atoll.agent.runtime.exitfile import read_exit_file
from atoll.agent.runtime.initbin import ensure_init_binary
from atoll.agent.runtime.logs import follow_log, log_size, read_log
from atoll.agent.runtime.oci import build_config, build_exec_process, build_resources, instance_mounts
from atoll.agent.runtime.oci_runtime import OciRuntime
from atoll.agent.runtime.rootpath import find_executable
from atoll.agent.runtime.selection import select_runtime
from atoll.agent.runtime.stdinfifo import close_stdin, initial_size, make_fifo, resize_tty, write_stdin
from atoll.agent.runtime.usage import process_table, read_stats
from atoll.agent.runtime.users import resolve_user
from atoll.agent.trash import Trash
from atoll.agent.volumes.local import LocalVolumes
from atoll.agent.volumes.prepare import populate, prepare
from atoll.agent.watch import ExitWatcher
from atoll.model.clock import from_timestamp, utcnow
from atoll.model.dnsrecords import RESOLVER_ADDRESS
from atoll.model.errors import Conflict, InvalidInput, NotFound, RuntimeFailure
from atoll.model.image import ImageConfig, ImageDiskUsage, ImageRecord
from atoll.model.imagehistory import HistoryEntry
from atoll.model.instance import ExitInfo, InstanceSpec, InstanceStatus, LogEntry, Resources, RuntimeState
from atoll.model.overlay import DEFAULT_VXLAN_PORT
from atoll.model.ports import Assignment, ControlPlane, ExecProcess, ExecSpec
from atoll.model.registry import Credential, PullEvent, PushEvent
from atoll.model.rootfiles import FileChange, PathStat
from atoll.model.secgroups import HostSecurity
from atoll.model.usage import InstanceStats, ProcessTable
from atoll.model.volume import MountType

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOST_EXIT_CODE = 255  # as Docker reports containers that vanished with their host
IMAGE_SYNC_GRACE = 30.0
"""Seconds an orderly stop waits for the image store's last layer sync (images/durable.py)."""


@dataclass(frozen=True)
class AgentConfig:
    host_id: str
    data_dir: Path
    """Image layers, instance directories (upper layers, logs, exit files) and the init binary."""
    run_dir: Path
    """The OCI runtime's state; tmpfs in production so a reboot starts clean."""
    cgroup_parent: str = "atoll"
    runtime: str = "auto"
    reconcile_interval: float = 5.0
    """How often drift is looked for; exits are seen at once through pidfds, not by this loop."""
    registries: RegistryOptions = field(default_factory=RegistryOptions)
    """Mirrors, CA files and insecure registries for pulls and pushes (see docs/registries.md)."""
    net_prefix: str = DEFAULT_PREFIX
    """Starts the name of every link the dataplane makes (``atb-...``); tests use their own."""
    nft_table: str = DEFAULT_TABLE
    underlay_ip: str = ""
    """Where this host's VXLAN packets come from; "" finds it (the default route's interface)."""
    vxlan_port: int = DEFAULT_VXLAN_PORT
    host_netns: Path | None = None
    """The namespace that plays the host's network; None is the agent's own. Tests run hosts in namespaces."""
    publish_pool: str = DEFAULT_POOL
    """Addresses of the veths that carry published ports (a /31 per instance)."""
    ip_forward: bool = True
    """Turn on ``net.ipv4.ip_forward`` for published ports, as Docker does."""
    big_tcp: str = "auto"
    """BIG TCP on tenant networks: ``auto``, ``off`` or a size in bytes (``bigtcp.resolve``)."""
    fast_path: bool = True
    """Established TCP flows between instances past the bridges (``fastpath``)."""


_NOT_PREPARED = ("process", "resources", "auto_remove", "stop_signal", "stop_timeout", "readonly_rootfs")
"""Spec fields ``create_instance`` does not act on (the launch reads them): a change in them needs no
new preparation."""


def _spec_key(spec: InstanceSpec) -> str:
    """What ``create_instance`` prepares from, as canonical JSON (a spec rebuilt from the controller's
    JSON has lists where the original had tuples, and must still count as the same)."""
    fields = {k: v for k, v in asdict(spec).items() if k not in _NOT_PREPARED}
    return json.dumps(fields, sort_keys=True, default=str)


@dataclass
class _Run:
    pid: int
    started_at: str
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the exit is recorded and the runtime cleaned up (what a stop waits for)."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set as soon as the exit is seen, before clean-up: wakes log followers."""


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        control: ControlPlane,
        store: ImageStore,
        runtime: OciRuntime,
        init_binary: Path,
    ) -> None:
        self.config = config
        self._control = control
        self._store = store
        self._registries = Registries(store, config.registries)
        self._runtime = runtime
        self._init = init_binary
        self.cgroup_version = cgroup_version()
        self._watcher = ExitWatcher()
        self._runs: dict[str, _Run] = {}
        self._specs: dict[str, InstanceSpec] = {}
        self._prepared: dict[str, str] = {}
        """Instances whose host side (directories, network, names) ``create_instance`` finished, as
        which spec (``_spec_key``); cleared by the purge."""
        self._restarts: dict[str, asyncio.TimerHandle] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._exiting: set[str] = set()  # exits being recorded right now; reconcile leaves them alone
        self._tasks: set[asyncio.Task[Any]] = set()
        self._releasing: set[asyncio.Task[Any]] = set()
        """Overlay refreshes waiting for a removal's background network work (see ``_purge``)."""
        self._loop_task: asyncio.Task[None] | None = None
        names = Names(config.net_prefix, config.nft_table)
        self._net = HostNetwork(
            NetConfig(
                names=names,
                netns_dir=config.run_dir / "netns",
                host_netns=config.host_netns,
                publish_pool=IPv4Network(config.publish_pool),
                ip_forward=config.ip_forward,
                gso_size=bigtcp.resolve(config.big_tcp),
                fast_path=config.fast_path,
            )
        )
        self._overlay = OverlaySync(
            config.host_id,
            control,
            names,
            underlay_ip=config.underlay_ip,
            port=config.vxlan_port,
            host_netns=config.host_netns,
            on_overlaid=self._net.set_overlaid,
            fast=self._net.fast,
        )
        self._volumes = LocalVolumes(config.data_dir / "volumes")
        self._trash = Trash(config.data_dir / "trash")
        self._routing_lock = asyncio.Lock()
        """Fetch-and-apply of routers, one at a time, so an older answer never lands after a newer one."""
        self._dns = NameService(
            lambda: control.network_names(config.host_id),
            self._net.netns_path,
            host_netns=self._net.config.host_netns,  # the host's resolvers are asked from there
        )

    @classmethod
    async def open(cls, config: AgentConfig, control: ControlPlane) -> Agent:
        for path in (config.data_dir / "instances", config.data_dir / "tmp", config.run_dir):
            path.mkdir(parents=True, exist_ok=True)
        # Mounted root filesystems hold the images' setuid files: no host user may reach them.
        (config.data_dir / "instances").chmod(0o700)
        LocalVolumes(config.data_dir / "volumes").open()  # tenants' data: no host user may reach it
        init = await asyncio.to_thread(ensure_init_binary, config.data_dir / "bin")
        store = ImageStore(config.data_dir / "images")
        runtime = await select_runtime(
            config.runtime, config.run_dir / "runtime", init, config.data_dir / "tmp", config.cgroup_parent
        )
        return cls(config, control, store, runtime, init)

    @property
    def host_id(self) -> str:
        return self.config.host_id

    @property
    def runtime_name(self) -> str:
        return self._runtime.name

    # -- life of the agent itself ------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt what is already running, then keep reconciling in the background."""
        await self.reconcile()
        self._spawn(self._trash.empty())  # what a previous run had no time to delete
        self._loop_task = asyncio.create_task(self._reconcile_forever())

    async def close(self) -> None:
        """Stop watching. Containers keep running: they do not depend on the agent."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for handle in self._restarts.values():
            handle.cancel()
        self._restarts.clear()
        self._watcher.close()
        self._net.hurry()  # idle bridges go now, not after their linger
        with contextlib.suppress(TimeoutError):  # what is left, the next start-up sync removes
            await asyncio.wait_for(self.settle(), 10)
        if not await self._store.settle(IMAGE_SYNC_GRACE):
            log.warning("image layers not on disk after %s s: the next start discards them", IMAGE_SYNC_GRACE)
        for task in list(self._tasks):
            task.cancel()
        await self._registries.close()
        await self._dns.close()

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.reconcile_interval)
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconcile failed; retrying in %ss", self.config.reconcile_interval)

    # -- images ------------------------------------------------------------------------------------

    async def import_images(self, archive: AsyncIterator[bytes]) -> list[ImageRecord]:
        return await self._store.import_archive(archive)

    async def build_image(
        self, rootfs_tar: AsyncIterator[bytes], config: ImageConfig, created: str = ""
    ) -> ImageRecord:
        return await self._store.build(rootfs_tar, config, created=created or None)

    def export_images(self, images: Mapping[str, list[str]]) -> AsyncIterator[bytes]:
        return self._store.export(images)

    async def image_present(self, image_id: str) -> bool:
        return self._store.get(image_id) is not None

    async def image_disk_usage(self) -> ImageDiskUsage:
        fs = await asyncio.to_thread(os.statvfs, self._store.root)
        held = sum(r.size for r in self._store.list())
        return ImageDiskUsage(total=fs.f_blocks * fs.f_frsize, free=fs.f_bavail * fs.f_frsize, images=held)

    def pull_image(self, reference: str, credentials: Mapping[str, Credential]) -> AsyncIterator[PullEvent]:
        return self._registries.pull(reference, credentials)

    def push_image(
        self, image_id: str, reference: str, credentials: Mapping[str, Credential]
    ) -> AsyncIterator[PushEvent]:
        return self._registries.push(image_id, reference, credentials)

    async def export_image(self, image_id: str) -> AsyncIterator[bytes]:
        src = await asyncio.to_thread(self._store.push_source, image_id)  # waits for its layers' sync
        scratch = self._store.scratch("export")
        try:
            async for chunk in export_layout(src, scratch):
                yield chunk
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    async def registry_login(self, registry: str, credential: Credential) -> None:
        await self._registries.login(registry, credential)

    async def remove_image(self, image_id: str) -> None:
        in_use = {layer for spec in self._specs.values() for layer in spec.layers}
        await asyncio.to_thread(self._store.remove, image_id, keep_layers=in_use)

    # -- instances ---------------------------------------------------------------------------------

    def _layout(self, instance_id: str) -> InstanceLayout:
        return instance_layout(self.config.data_dir, instance_id)

    def _cgroup(self, instance_id: str) -> str:
        return f"/{self.config.cgroup_parent}/{instance_id}"

    def _lock(self, instance_id: str) -> asyncio.Lock:
        return self._locks.setdefault(instance_id, asyncio.Lock())

    async def create_instance(self, spec: InstanceSpec) -> None:
        self._store.layer_dirs(spec.layers)  # fails now, with a clear error, if the image is missing
        await self._store.wait_durable(spec.layers)  # a just-pulled image: its rootfs needs it on disk
        prepare(spec, self._volumes, self.host_id)  # a missing bind source fails now, too
        layout = self._layout(spec.id)
        for path in (layout.upper, layout.work, layout.rootfs, layout.etc):
            path.mkdir(parents=True, exist_ok=True)
        key = _spec_key(spec)
        if self._prepared.get(spec.id) == key and spec.id in self._specs:
            # Done by the create of this very spec (a `docker start` after `docker create`, a restart):
            # the namespace, its rules and names are still in place, and reconcile repairs any drift.
            return
        self._specs[spec.id] = spec
        # Its groups, applied together with its veths (one rule-set load), before they join their bridges.
        security = await self._fetch_security_policy() if spec.ports else None
        # This host's overlay description names the remote ports of its networks, not its own: only a
        # network new to this host (its bridge and VXLAN device are made now) needs a refresh.
        here = self._net.local_networks()
        await self._net.attach(spec, security=security)  # before any start: the address stays across runs
        if any(p.network_id not in here for p in spec.ports):
            await self._overlay.refresh()
        try:
            await self._dns.serve(spec)
        except Exception:  # names are not worth failing the instance for; reconcile binds again
            log.exception("could not serve names to instance %s", spec.id)
        self._prepared[spec.id] = key

    async def start_instance(self, spec: InstanceSpec) -> RuntimeState:
        async with self._lock(spec.id):
            run = self._runs.get(spec.id)
            if run is not None:
                return RuntimeState(spec.id, running=True, pid=run.pid, started_at=run.started_at)
            await self.create_instance(spec)
            pid = await self._launch(spec)
            run = _Run(pid=pid, started_at=started_at(self._layout(spec.id)))
            self._runs[spec.id] = run
            self._watcher.watch(spec.id, pid, lambda: self._spawn(self._handle_exit(spec.id)))
            return RuntimeState(spec.id, running=True, pid=pid, started_at=run.started_at)

    async def _launch(self, spec: InstanceSpec) -> int:
        layout = self._layout(spec.id)
        if not is_mounted(layout.rootfs):
            await self._store.wait_durable(spec.layers)  # cheap: create_instance waited already
            mount_overlay(
                self._store.layer_dirs(spec.layers),
                layout.upper,
                layout.work,
                layout.rootfs,
                volatile=spec.auto_remove,
            )
        log_fd = exit_fd = stdin_fd = -1
        try:
            user = resolve_user(layout.rootfs, spec.process.user)
            self._check_executable(layout.rootfs, spec.process.args[0], spec.process.env)
            await populate(spec, layout.rootfs, self._volumes, layout.root)
            mounts = write_etc_files(
                layout.etc,
                spec.hostname or spec.id[:12],
                addresses=[p.ip for p in spec.ports],
                nameservers=[RESOLVER_ADDRESS] if spec.ports else [],  # subnets' servers: its upstreams
            )
            config = build_config(
                spec,
                rootfs=layout.rootfs,
                init_binary=self._init,
                user=user,
                cgroups_path=self._cgroup(spec.id),
                mounts=mounts,
                netns=self._net.netns_path(spec.id) if spec.ports or spec.published else None,
                user_mounts=instance_mounts(spec.mounts, self._volumes.path),
            )
            layout.config.write_text(json.dumps(config))
            log_fd = os.open(layout.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            exit_fd = os.open(layout.exit_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
            stdin_fd = make_fifo(layout.stdin) if spec.process.stdin or spec.process.tty else -1
            if stdin_fd >= 0 and spec.process.tty and spec.process.console_size:
                rows, cols = spec.process.console_size
                initial_size(stdin_fd, rows, cols)  # init applies it before it starts the process
            passed = stdin_fd if stdin_fd >= 0 else None

            def run() -> Awaitable[int]:
                return self._runtime.run_detached(
                    spec.id,
                    layout.bundle,
                    log_fd=log_fd,
                    exit_fd=exit_fd,
                    pid_file=layout.pid_file,
                    stdin_fd=passed,
                )

            try:
                return await run()
            except RuntimeFailure:
                # A stale record (e.g. left by a crash between exit and delete) blocks the id; clear it once.
                if await self._runtime.state(spec.id) is None:
                    raise
                await self._runtime.delete(spec.id, force=True)
                return await run()
        except BaseException:
            unmount(layout.rootfs)
            raise
        finally:
            for fd in (log_fd, exit_fd, stdin_fd):
                if fd >= 0:
                    os.close(fd)

    @staticmethod
    def _check_executable(rootfs: Path, arg0: str, env: list[str]) -> None:
        path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
        if find_executable(rootfs, arg0, path) is None:
            raise InvalidInput(f'exec: "{arg0}": executable file not found in $PATH')

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _collect_exit(self, instance_id: str) -> ExitInfo:
        """How the last run ended, from what the container's init left behind."""
        layout = self._layout(instance_id)
        oom = False
        with contextlib.suppress(OSError):
            oom = CgroupReader(self._cgroup(instance_id)).oom_kills() > 0
        status = read_exit_file(layout.exit_file)
        if status is not None:
            finished = from_timestamp(layout.exit_file.stat().st_mtime)
            return ExitInfo(exit_code=status[0], oom_killed=oom, finished_at=finished)
        # No status: init itself was SIGKILLed (by a kill, a stop timeout or the OOM killer).
        return ExitInfo(exit_code=137, oom_killed=oom, finished_at=utcnow())

    async def _handle_exit(self, instance_id: str, *, stale: bool = False) -> None:
        """Record how a run ended and clean up after it.

        ``stale`` is for a container found stopped by ``reconcile``: by the time the lock is ours it may
        have been started again (and be watched), in which case there is nothing to do.
        """
        run = self._runs.get(instance_id)
        self._exiting.add(instance_id)
        try:
            async with self._lock(instance_id):
                if stale:
                    state = await self._runtime.state(instance_id)
                    if instance_id in self._runs or state is None or state.get("status") != "stopped":
                        return
                info = self._collect_exit(instance_id)
                self._runs.pop(instance_id, None)
                if run is not None:
                    run.ended.set()
                report = self._spawn(self._report_exit(instance_id, info))  # wakes waiters before cleanup
                try:
                    await self._cleanup_runtime(instance_id)
                except Exception:
                    log.exception("cleanup after the exit of %s failed; reconcile will retry", instance_id)
            with contextlib.suppress(Exception):
                await report
        finally:
            self._exiting.discard(instance_id)
            if run is not None:
                run.ended.set()
                run.exited.set()  # a stop waiting on this must never hang

    async def _report_exit(self, instance_id: str, info: ExitInfo) -> None:
        try:
            delay = await self._control.instance_exited(self.host_id, instance_id, info)
        except NotFound:
            return
        except Exception:
            log.exception("could not report the exit of %s; the next reconcile will", instance_id)
            return
        if delay is not None:
            self._schedule_restart(instance_id, delay)

    async def _cleanup_runtime(self, instance_id: str) -> None:
        # Side by side, and the unmount in a thread: unmounting a non-volatile overlay syncs the disk
        # under its upper layer, which must not stall the event loop.
        results = await asyncio.gather(
            self._runtime.delete(instance_id),  # it has exited: a plain delete, no freeze-and-kill
            asyncio.to_thread(unmount, self._layout(instance_id).rootfs),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _schedule_restart(self, instance_id: str, delay: float) -> None:
        self._cancel_restart(instance_id)
        loop = asyncio.get_running_loop()
        self._restarts[instance_id] = loop.call_later(
            max(delay, 0.0), lambda: self._spawn(self._restart(instance_id))
        )

    def _cancel_restart(self, instance_id: str) -> None:
        handle = self._restarts.pop(instance_id, None)
        if handle is not None:
            handle.cancel()

    async def _restart(self, instance_id: str) -> None:
        self._restarts.pop(instance_id, None)
        spec = self._specs.get(instance_id)
        if spec is None:
            return
        try:
            state = await self.start_instance(spec)
        except Exception as exc:  # the policy decides whether to try again
            message = exc.message if isinstance(exc, RuntimeFailure | InvalidInput) else str(exc)
            await self._report_exit(instance_id, ExitInfo(exit_code=127, finished_at=utcnow(), error=message))
            return
        await self._control.instance_started(self.host_id, state)

    async def stop_instance(self, instance_id: str, signal: str, timeout: float) -> None:
        self._cancel_restart(instance_id)
        run = self._runs.get(instance_id)
        if run is None:
            return
        await self._runtime.kill(instance_id, signal)
        try:
            await asyncio.wait_for(run.exited.wait(), timeout)
        except TimeoutError:
            await self._runtime.kill(instance_id, "SIGKILL", all_processes=True)
            await asyncio.wait_for(run.exited.wait(), 30)

    async def signal_instance(self, instance_id: str, signal: str) -> None:
        if instance_id not in self._runs:
            raise Conflict(f"instance {instance_id[:12]} is not running")
        await self._runtime.kill(instance_id, signal)

    async def remove_instance(self, instance_id: str) -> None:
        self._cancel_restart(instance_id)
        if instance_id in self._runs:
            await self.stop_instance(instance_id, "SIGKILL", 0)
        async with self._lock(instance_id):
            await self._purge(instance_id)
        self._locks.pop(instance_id, None)

    async def _purge(self, instance_id: str) -> None:
        """Remove every trace of an instance from this host. Idempotent."""
        self._watcher.unwatch(instance_id)
        self._runs.pop(instance_id, None)
        spec = self._specs.pop(instance_id, None)
        self._prepared.pop(instance_id, None)
        await self._runtime.delete(instance_id, force=True)
        layout = self._layout(instance_id)
        unmount(layout.rootfs)
        remove_cgroup(self._cgroup(instance_id))
        await self._dns.stop(instance_id)  # its sockets would keep the namespace alive
        # Gone for the user when this returns (name and address reusable); the links and the namespace
        # are deleted in the background (see HostNetwork.release), the overlay refreshed after that if
        # a network left this host (its VXLAN device goes with its bridge).
        await self._net.release(instance_id, spec.ports if spec is not None else (), defer=True)
        here = self._net.local_networks()
        if spec is not None and any(p.network_id not in here for p in spec.ports):
            task = self._spawn(self._refresh_overlay_after_release())
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
        if self._trash.take(layout.root) is not None:
            self._spawn(self._trash.empty())  # deleted in the background, not while the caller waits

    async def _refresh_overlay_after_release(self) -> None:
        await self._net.settle()
        await self._overlay.refresh()

    async def settle(self) -> None:
        """Wait for the background part of removals under way (links, namespaces, overlay devices):
        for tests and for a clean shutdown."""
        await self._net.settle()
        while self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)

    async def logs(
        self, instance_id: str, *, follow: bool = False, tail: int | None = None, since: str = ""
    ) -> AsyncIterator[LogEntry]:
        layout = self._layout(instance_id)
        if not layout.root.is_dir():
            raise NotFound(f"instance {instance_id[:12]} has no files on host {self.host_id}")
        end = log_size(layout.log)
        for entry in await asyncio.to_thread(read_log, layout.log, tail=tail, since=since, until=end):
            yield entry
        if follow:

            def stopped() -> bool:
                return instance_id not in self._runs and instance_id not in self._restarts

            async def pause(poll: float) -> None:
                run = self._runs.get(instance_id)
                if run is None or run.ended.is_set():
                    await asyncio.sleep(poll)
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.ended.wait(), poll)

            async for entry in follow_log(layout.log, offset=end, stopped=stopped, pause=pause):
                yield entry

    async def names_changed(self, network_ids: list[str]) -> None:
        """The controller changed names on these networks: fetch them now rather than at the next
        reconcile. Every host with a port on one of them refreshes; the others have nothing to update."""
        mine = {p.network_id for spec in self._specs.values() for p in spec.ports}
        if mine & set(network_ids):
            await self._dns.refresh()

    async def exec(self, instance_id: str, spec: ExecSpec) -> ExecProcess:
        inst = self._specs.get(instance_id)
        if inst is None or instance_id not in self._runs:
            raise Conflict(f"instance {instance_id[:12]} is not running")
        layout = self._layout(instance_id)
        user = resolve_user(layout.rootfs, spec.user or inst.process.user)
        # The running container's own environment (HOSTNAME, HOME, TERM as started), not the spec's.
        base_env = json.loads(layout.config.read_text())["process"]["env"]
        process = build_exec_process(spec, base_env=base_env, user=user, default_cwd=inst.process.cwd)
        return await self._runtime.exec(instance_id, process, stdin=spec.stdin)

    async def refresh_overlay(self) -> None:
        await self._overlay.refresh()

    async def remove_volume(self, volume_id: str) -> None:
        await asyncio.to_thread(self._volumes.remove, volume_id)

    async def write_stdin(self, instance_id: str, data: bytes) -> None:
        await write_stdin(self._layout(instance_id).stdin, instance_id, data)

    async def close_stdin(self, instance_id: str) -> None:
        await close_stdin(self._layout(instance_id).stdin, instance_id)

    async def resize_tty(self, instance_id: str, rows: int, cols: int) -> None:
        await resize_tty(self._layout(instance_id).stdin, instance_id, rows, cols)

    async def routing_changed(self) -> None:
        async with self._routing_lock:
            await self._net.route(await self._control.routers(self.host_id))
        # A router bound here may have made a bridge of an overlay network (it needs its VXLAN device),
        # or one moved elsewhere (its MACs now point at another host).
        await self._overlay.refresh()

    # -- security groups -------------------------------------------------------------------------

    async def refresh_security(self) -> None:
        await self._net.set_security(await self._control.security(self.host_id))

    async def _fetch_security_policy(self) -> HostSecurity | None:
        """This host's security policy, or None (logged) if the control plane cannot say now: then the
        last policy stays, and ports it does not know drop everything (fail closed)."""
        try:
            return await self._control.security(self.host_id)
        except Exception:
            log.exception("could not fetch the security groups of this host")
            return None

    async def _fetch_security(self) -> None:
        """Like ``refresh_security``, but a failure only logs: ports the last policy does not know
        drop everything (fail closed) until a later refresh or reconcile succeeds."""
        try:
            await self.refresh_security()
        except Exception:
            log.exception("could not fetch the security groups of this host")

    def _require_running(self, instance_id: str) -> None:
        if instance_id not in self._runs:
            raise Conflict(f"instance {instance_id[:12]} is not running")

    async def pause_instance(self, instance_id: str) -> None:
        async with self._lock(instance_id):
            self._require_running(instance_id)
            await self._runtime.pause(instance_id)

    async def unpause_instance(self, instance_id: str) -> None:
        async with self._lock(instance_id):
            self._require_running(instance_id)
            await self._runtime.resume(instance_id)

    async def instance_top(self, instance_id: str, ps_args: str) -> ProcessTable:
        self._require_running(instance_id)
        return await process_table(CgroupReader(self._cgroup(instance_id)).procs(), ps_args)

    async def instance_stats(self, instance_id: str) -> InstanceStats:
        self._require_running(instance_id)
        run = self._runs.get(instance_id)
        pid = run.pid if run is not None else 0
        return await asyncio.to_thread(read_stats, CgroupReader(self._cgroup(instance_id)), pid)

    async def update_resources(self, instance_id: str, resources: Resources) -> None:
        async with self._lock(instance_id):
            spec = self._specs.get(instance_id)
            if spec is not None:
                self._specs[instance_id] = replace(spec, resources=resources)
            if instance_id in self._runs:
                await self._runtime.update(instance_id, build_resources(resources, detect_host_cgroups()))

    # -- reconciliation ----------------------------------------------------------------------------

    # -- root filesystem files: docker cp, export, diff, SizeRw (rootview.py) ----------------------------

    @property
    def _root_view(self) -> RootView:
        return RootView(self._store, self._layout, self._lock, self._view_mounts, self._running_pid)

    def _running_pid(self, instance_id: str) -> int | None:
        run = self._runs.get(instance_id)
        return run.pid if run is not None else None

    async def _view_mounts(self, instance_id: str, rootfs: Path) -> list[ViewMount]:
        """A stopped instance's volume and bind mounts for ``docker cp`` (mountview.py); its volumes are
        populated first, as its first start would, so a copy made before that start does not stop the
        image's content from being copied up."""
        spec = self._specs.get(instance_id)
        if spec is None:
            return []
        await populate(spec, rootfs, self._volumes, self._layout(instance_id).root)
        return [
            ViewMount(
                m.destination,
                self._volumes.ensure(m.source) if m.type == MountType.VOLUME else Path(m.source),
                m.readonly,
            )
            for m in spec.mounts
            if m.type == MountType.VOLUME or (m.type == MountType.BIND and os.path.exists(m.source))
        ]

    async def image_history(self, image_id: str) -> list[HistoryEntry]:
        return await asyncio.to_thread(self._store.history, image_id)

    async def instance_path_stat(self, instance_id: str, layers: list[str], path: str) -> PathStat:
        return await self._root_view.stat(instance_id, layers, path)

    def instance_archive(
        self, instance_id: str, layers: list[str], path: str, *, contents: bool = False
    ) -> AsyncIterator[bytes]:
        return self._root_view.archive(instance_id, layers, path, contents=contents)

    async def extract_to_instance(
        self, instance_id: str, layers: list[str], path: str, archive: AsyncIterator[bytes]
    ) -> None:
        await self._root_view.extract(instance_id, layers, path, archive)

    async def instance_changes(self, instance_id: str, layers: list[str]) -> list[FileChange]:
        return await self._root_view.changes(instance_id, layers)

    async def instance_size_rw(self, instance_id: str) -> int:
        return await self._root_view.size_rw(instance_id)

    async def replug_instance(self, spec: InstanceSpec) -> None:
        """Hot-plug (docs/networking.md "Hot-plugged NICs"): the dataplane converges the instance's
        namespace to ``spec.ports``; groups first, so a new veth joins its bridge with its rules."""
        async with self._lock(spec.id):
            path = self._net.netns_path(spec.id)
            run = self._runs.get(spec.id)
            if spec.ports and run is not None and not is_netns(path):
                # Started without a network (a namespace runc made), or its last NIC left and a sync
                # dropped the mount: keep the namespace it runs in, and plug the NIC in there.
                await asyncio.to_thread(adopt_netns, path, run.pid)
            self._specs[spec.id] = spec
            if spec.ports:
                await self._fetch_security()
            await self._net.replug(spec)
            await self._overlay.refresh()
            if spec.ports:
                await self._dns.serve(spec)
            else:
                await self._dns.stop(spec.id)
            if run is not None:  # its /etc/hosts and resolv.conf, rewritten in place (bind-mounted files)
                write_etc_files(
                    self._layout(spec.id).etc,
                    spec.hostname or spec.id[:12],
                    addresses=[p.ip for p in spec.ports],
                    nameservers=[RESOLVER_ADDRESS] if spec.ports else [],
                )

    async def reconcile(self) -> None:
        """Make this host match the controller's assignments. Safe to run at any time, any number of times."""
        # Look at the host before asking the controller: anything created after this snapshot is
        # absent from it, so a concurrent create can never be mistaken for an orphan.
        local_dirs = {p.name for p in (self.config.data_dir / "instances").iterdir() if p.is_dir()}
        local_containers = {c["id"]: c for c in await self._runtime.list()}
        local_cgroups = set(list_cgroups(self.config.cgroup_parent))
        assignments = {a.spec.id: a for a in await self._control.assignments(self.host_id)}

        for instance_id, assignment in assignments.items():
            self._specs.setdefault(instance_id, assignment.spec)
            try:
                await self._converge(assignment, local_containers.get(instance_id))
            except Exception:
                log.exception("could not converge instance %s", instance_id)

        orphans = (local_dirs | set(local_containers) | {c.rsplit("/", 1)[-1] for c in local_cgroups}) - set(
            assignments
        )
        for instance_id in orphans:
            log.info("removing %s: no longer assigned to this host", instance_id)
            with contextlib.suppress(Exception):
                await self._runtime.kill(instance_id, "SIGKILL", all_processes=True)
            async with self._lock(instance_id):
                await self._purge(instance_id)
        await self._fetch_security()  # on failure the last policy stays; unknown ports stay closed
        try:
            async with self._routing_lock:
                routers = await self._control.routers(self.host_id)
                await self._net.sync((a.spec for a in assignments.values()), routers=routers)
        except Exception:
            log.exception("could not converge the network dataplane; retrying at the next reconcile")
        await self._overlay.reconcile()
        try:
            await self._dns.sync(a.spec for a in assignments.values())
            await self._dns.refresh()
        except Exception:
            log.exception("could not converge the resolvers; retrying at the next reconcile")

    async def _converge(self, assignment: Assignment, container: dict[str, Any] | None) -> None:
        instance_id = assignment.spec.id
        if instance_id in self._exiting:
            return
        if instance_id in self._runs:
            if not assignment.desired_running:
                await self.stop_instance(
                    instance_id, assignment.spec.stop_signal, assignment.spec.stop_timeout
                )
            return
        if container is not None and container.get("status") == "running" and container.get("pid"):
            await self._adopt(assignment, int(container["pid"]))
            return
        if container is not None:
            if container.get("status") == "stopped":
                # It ended while nobody was watching: its init left the exit status behind.
                await self._handle_exit(instance_id, stale=True)
            return  # "created" or "paused": a start in flight, or not ours to judge
        if assignment.status == InstanceStatus.RUNNING:
            info = self._collect_exit(instance_id)
            if read_exit_file(self._layout(instance_id).exit_file) is None:
                info = ExitInfo(
                    exit_code=LOST_EXIT_CODE,
                    finished_at=utcnow(),
                    error="the runtime has no record of this instance (host restarted?)",
                )
            unmount(self._layout(instance_id).rootfs)
            await self._report_exit(instance_id, info)
        elif (
            assignment.status == InstanceStatus.RESTARTING
            and assignment.desired_running
            and instance_id not in self._restarts
        ):
            self._schedule_restart(instance_id, assignment.restart_at - time.time())

    async def _adopt(self, assignment: Assignment, pid: int) -> None:
        instance_id = assignment.spec.id
        async with self._lock(instance_id):
            if instance_id in self._runs:
                return
            started = started_at(self._layout(instance_id))
            self._runs[instance_id] = _Run(pid=pid, started_at=started)
            self._watcher.watch(instance_id, pid, lambda: self._spawn(self._handle_exit(instance_id)))
        log.info("adopted running instance %s (pid %d)", instance_id, pid)
        if assignment.status != InstanceStatus.RUNNING:
            await self._control.instance_started(
                self.host_id, RuntimeState(instance_id, running=True, pid=pid, started_at=started)
            )
        if not assignment.desired_running:
            await self.stop_instance(instance_id, assignment.spec.stop_signal, assignment.spec.stop_timeout)

    # -- moving instances between hosts (agent/migration.py) -----------------------------------------

    def export_writable(self, instance_id: str, since: float = 0.0) -> AsyncIterator[bytes]:
        return migration.export(self._layout(instance_id).upper, self.config.data_dir / "tmp", since)

    async def receive_writable(self, instance_id: str, archive: AsyncIterator[bytes]) -> None:
        stage = migration.staging_dir(self.config.data_dir, instance_id)
        await migration.receive(stage, self.config.data_dir / "tmp", archive)

    async def install_writable(self, instance_id: str) -> None:
        async with self._lock(instance_id):
            if instance_id in self._runs:
                raise Conflict(f"instance {instance_id} is running here: its writable layer is in use")
            unmount(self._layout(instance_id).rootfs)
            stage = migration.staging_dir(self.config.data_dir, instance_id)
            await asyncio.to_thread(migration.install, stage, self._layout(instance_id).upper)

    async def discard_writable(self, instance_id: str) -> None:
        await asyncio.to_thread(migration.discard, migration.staging_dir(self.config.data_dir, instance_id))

    async def fence(self, keep: list[str]) -> list[str]:
        """Kill and remove every instance on this host but ``keep``: copies the controller has placed
        elsewhere while this host was unreachable. Returns the ids removed."""
        local_dirs = {p.name for p in (self.config.data_dir / "instances").iterdir() if p.is_dir()}
        local = local_dirs | {c["id"] for c in await self._runtime.list()} | set(self._runs)
        stale = sorted(local - set(keep))
        for instance_id in stale:
            log.warning(
                "fencing %s: the controller placed it elsewhere while this host was away", instance_id
            )
            self._cancel_restart(instance_id)
            with contextlib.suppress(Exception):
                await self._runtime.kill(instance_id, "SIGKILL", all_processes=True)
            async with self._lock(instance_id):
                await self._purge(instance_id)
        return stale


def started_at(layout: InstanceLayout) -> str:
    """When the current run began: the runtime writes the pid file as it starts the init, before the
    command can run (and perhaps exit), so this is never later than the exit."""
    try:
        return from_timestamp(layout.pid_file.stat().st_mtime)
    except OSError:
        return utcnow()
