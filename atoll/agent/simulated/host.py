"""One simulated host: the `HostAgent` protocol with instances as records in memory.

It keeps what a real agent keeps (images by id, instance specs, which instances run) and reports to the
controller the way the real agent does: exits through `ControlPlane.instance_exited`, and `start` returns
the `RuntimeState` the controller records. No process, mount, cgroup or link is ever made; methods that
would need a real root filesystem (exec, logs, archives, stats) refuse with a `RuntimeFailure` saying so.

Images: `build_image` and `import_images` read the whole stream (the bytes really travel) and derive the
image id from a digest of the content, config and creation time, so the same starter image sent to every
host gets the same id everywhere, as it does on real hosts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import NoReturn

from atoll.model.clock import utcnow
from atoll.model.cluster import HostResources
from atoll.model.errors import Conflict, NotFound, RuntimeFailure
from atoll.model.image import ImageConfig, ImageDiskUsage, ImageRecord
from atoll.model.imagehistory import HistoryEntry
from atoll.model.instance import ExitInfo, InstanceSpec, LogEntry, Resources, RuntimeState
from atoll.model.ports import ControlPlane, ExecProcess, ExecSpec
from atoll.model.registry import Credential, PullEvent, PushEvent
from atoll.model.rootfiles import FileChange, PathStat
from atoll.model.usage import InstanceStats, ProcessTable

SIGKILL_EXIT = 137
EXIT_CODES = {"SIGTERM": 143, "SIGKILL": 137, "SIGINT": 130, "SIGQUIT": 131, "SIGHUP": 129}


@dataclass
class Counters:
    """Calls served, per method: what the load test put on each simulated host."""

    calls: dict[str, int] = field(default_factory=dict)

    def count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1


class SimulatedHost:
    def __init__(self, host_id: str, capacity: HostResources, control: ControlPlane) -> None:
        self._host_id = host_id
        self.capacity = capacity
        self.control = control
        self.images: dict[str, ImageRecord] = {}
        self.specs: dict[str, InstanceSpec] = {}
        self.running: dict[str, int] = {}
        self.counters = Counters()
        self._next_pid = 1000

    @property
    def host_id(self) -> str:
        return self._host_id

    def used(self) -> HostResources:
        """What the running instances ask for: the simulated host's measured use."""
        cpu = mem = pids = 0
        for instance_id in self.running:
            r = self.specs[instance_id].resources
            if r.cpu_quota_us and r.cpu_period_us:
                cpu += r.cpu_quota_us * 1000 // r.cpu_period_us
            mem += r.memory_bytes or 0
            pids += 1
        return HostResources(cpu_millis=cpu, memory_bytes=mem, disk_bytes=0, pids=pids)

    def _unsupported(self, what: str) -> NoReturn:
        raise RuntimeFailure(f"host {self._host_id} is simulated: it has no {what}")

    # Images

    async def build_image(
        self, rootfs_tar: AsyncIterator[bytes], config: ImageConfig, created: str = ""
    ) -> ImageRecord:
        self.counters.count("build_image")
        layer, size = hashlib.sha256(), 0
        async for chunk in rootfs_tar:
            layer.update(chunk)
            size += len(chunk)
        created = created or utcnow()
        blob = json.dumps({"layer": layer.hexdigest(), "config": asdict(config), "created": created})
        record = ImageRecord(
            id="sha256:" + hashlib.sha256(blob.encode()).hexdigest(),
            repo_tags=[],
            layers=["sha256:" + layer.hexdigest()],
            size=size,
            created=created,
            architecture="amd64",
            os="linux",
            config=config,
        )
        self.images[record.id] = record
        return record

    async def import_images(self, archive: AsyncIterator[bytes]) -> list[ImageRecord]:
        self.counters.count("import_images")
        async for _ in archive:
            pass
        self._unsupported("image archive reader (build images instead)")

    def export_images(self, images: Mapping[str, list[str]]) -> AsyncIterator[bytes]:
        self._unsupported("image blobs to export")

    def export_image(self, image_id: str) -> AsyncIterator[bytes]:
        self._unsupported("image blobs to export")

    async def image_present(self, image_id: str) -> bool:
        self.counters.count("image_present")
        return image_id in self.images

    async def image_disk_usage(self) -> ImageDiskUsage:
        held = sum(r.size for r in self.images.values())
        return ImageDiskUsage(
            total=self.capacity.disk_bytes, free=self.capacity.disk_bytes - held, images=held
        )

    def pull_image(self, reference: str, credentials: Mapping[str, Credential]) -> AsyncIterator[PullEvent]:
        self._unsupported("registry client")

    def push_image(
        self, image_id: str, reference: str, credentials: Mapping[str, Credential]
    ) -> AsyncIterator[PushEvent]:
        self._unsupported("registry client")

    async def registry_login(self, registry: str, credential: Credential) -> None:
        self._unsupported("registry client")

    async def remove_image(self, image_id: str) -> None:
        self.images.pop(image_id, None)

    async def image_history(self, image_id: str) -> list[HistoryEntry]:
        return []

    # Instances: created -> running -> exited -> removed

    async def create_instance(self, spec: InstanceSpec) -> None:
        self.counters.count("create_instance")
        if spec.image_id not in self.images:
            raise NotFound(f"image {spec.image_id} is not on host {self._host_id}")
        self.specs[spec.id] = spec

    def _spec(self, instance_id: str) -> InstanceSpec:
        spec = self.specs.get(instance_id)
        if spec is None:
            raise NotFound(f"instance {instance_id} is not on host {self._host_id}")
        return spec

    async def start_instance(self, spec: InstanceSpec) -> RuntimeState:
        self.counters.count("start_instance")
        self.specs[spec.id] = spec
        pid = self.running.get(spec.id)
        if pid is None:
            self._next_pid += 1
            pid = self.running[spec.id] = self._next_pid
        return RuntimeState(id=spec.id, running=True, pid=pid, started_at=utcnow())

    async def _exit(self, instance_id: str, code: int) -> None:
        if self.running.pop(instance_id, None) is None:
            return
        info = ExitInfo(exit_code=code, finished_at=utcnow())
        with contextlib.suppress(NotFound):  # removed meanwhile: nothing left to report to
            await self.control.instance_exited(self._host_id, instance_id, info)

    async def stop_instance(self, instance_id: str, signal: str, timeout: float) -> None:
        self.counters.count("stop_instance")
        await self._exit(instance_id, EXIT_CODES.get(signal, SIGKILL_EXIT))

    async def signal_instance(self, instance_id: str, signal: str) -> None:
        self._spec(instance_id)
        if instance_id not in self.running:
            raise Conflict(f"instance {instance_id[:12]} is not running")
        if signal in EXIT_CODES:
            await self._exit(instance_id, EXIT_CODES[signal])

    async def remove_instance(self, instance_id: str) -> None:
        self.counters.count("remove_instance")
        await self._exit(instance_id, SIGKILL_EXIT)
        self.specs.pop(instance_id, None)

    async def pause_instance(self, instance_id: str) -> None:
        self._spec(instance_id)

    async def unpause_instance(self, instance_id: str) -> None:
        self._spec(instance_id)

    async def update_resources(self, instance_id: str, resources: Resources) -> None:
        self._spec(instance_id)

    def logs(
        self, instance_id: str, *, follow: bool = False, tail: int | None = None, since: str = ""
    ) -> AsyncIterator[LogEntry]:
        self._unsupported("instance output")

    async def exec(self, instance_id: str, spec: ExecSpec) -> ExecProcess:
        self._unsupported("processes to exec in")

    async def write_stdin(self, instance_id: str, data: bytes) -> None:
        self._unsupported("process stdin")

    async def close_stdin(self, instance_id: str) -> None:
        self._unsupported("process stdin")

    async def resize_tty(self, instance_id: str, rows: int, cols: int) -> None:
        self._unsupported("terminal")

    async def instance_top(self, instance_id: str, ps_args: str) -> ProcessTable:
        self._spec(instance_id)
        return ProcessTable(titles=["PID", "CMD"], processes=[])

    async def instance_stats(self, instance_id: str) -> InstanceStats:
        self._unsupported("cgroup counters")

    async def instance_path_stat(self, instance_id: str, layers: list[str], path: str) -> PathStat:
        self._unsupported("root filesystem")

    def instance_archive(
        self, instance_id: str, layers: list[str], path: str, *, contents: bool = False
    ) -> AsyncIterator[bytes]:
        self._unsupported("root filesystem")

    async def extract_to_instance(
        self, instance_id: str, layers: list[str], path: str, archive: AsyncIterator[bytes]
    ) -> None:
        self._unsupported("root filesystem")

    async def instance_changes(self, instance_id: str, layers: list[str]) -> list[FileChange]:
        return []

    async def instance_size_rw(self, instance_id: str) -> int:
        return 0

    async def replug_instance(self, spec: InstanceSpec) -> None:
        self._spec(spec.id)
        self.specs[spec.id] = spec

    # Cold migration needs a writable layer to copy, which a simulated host does not have.

    def export_writable(self, instance_id: str, since: float = 0.0) -> AsyncIterator[bytes]:
        self._unsupported("writable layer")

    async def receive_writable(self, instance_id: str, archive: AsyncIterator[bytes]) -> None:
        self._unsupported("writable layer")

    async def install_writable(self, instance_id: str) -> None:
        self._unsupported("writable layer")

    async def discard_writable(self, instance_id: str) -> None:
        self._unsupported("writable layer")

    async def fence(self, keep: list[str]) -> list[str]:
        """Drop every instance the controller placed elsewhere, as the real agent does on return."""
        self.counters.count("fence")
        stale = sorted(set(self.specs) - set(keep))
        for instance_id in stale:
            self.running.pop(instance_id, None)
            self.specs.pop(instance_id, None)
        return stale

    # Notifications: a simulated host has no dataplane to converge, so these only count.

    async def refresh_overlay(self) -> None:
        self.counters.count("refresh_overlay")

    async def remove_volume(self, volume_id: str) -> None:
        self.counters.count("remove_volume")

    async def routing_changed(self) -> None:
        self.counters.count("routing_changed")

    async def refresh_security(self) -> None:
        self.counters.count("refresh_security")

    async def names_changed(self, network_ids: list[str]) -> None:
        self.counters.count("names_changed")

    async def adopt(self) -> int:
        """At start, like the real agent: fetch this host's assignments and run what should run."""
        assignments = await self.control.assignments(self._host_id)
        for a in assignments:
            self.specs[a.spec.id] = a.spec
            if a.desired_running:
                state = await self.start_instance(a.spec)
                await self.control.instance_started(self._host_id, state)
        return len(assignments)
