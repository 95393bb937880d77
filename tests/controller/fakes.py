"""An in-memory HostAgent: the controller's boundary, faked. It records every call, keeps the instances
it was given, and reports exits through the real LocalControlPlane, as the real agent does.

Image "archives" are JSON: a list of ImageRecord fields (see ``image_archive``), so tests can say what an
import holds while the bytes still stream through the API.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal as signals
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from atoll.model.clock import utcnow
from atoll.model.errors import BadImage, NotFound, RuntimeFailure
from atoll.model.image import ImageConfig, ImageDiskUsage, ImageRecord
from atoll.model.imagehistory import HistoryEntry
from atoll.model.instance import ExitInfo, InstanceSpec, LogEntry, Resources, RuntimeState
from atoll.model.ports import ControlPlane, ExecSpec
from atoll.model.registry import Credential, Pulled, PullEvent, Pushed, PushEvent, TransferEvent
from atoll.model.rootfiles import ChangeKind, FileChange, PathStat
from atoll.model.routing import RouterSpec
from atoll.model.secgroups import HostSecurity
from atoll.model.usage import InstanceStats, ProcessTable

TERMINATING = {"SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT", "SIGHUP"}


def image_id(n: int | str) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def image_record(
    n: int | str = 1,
    *,
    tags: list[str] | None = None,
    cmd: list[str] | None = None,
    entrypoint: list[str] | None = None,
    env: list[str] | None = None,
    **config: Any,
) -> dict[str, Any]:
    cfg = ImageConfig(
        entrypoint=entrypoint,
        cmd=["sh"] if cmd is None else cmd,
        env=env if env is not None else ["PATH=/usr/bin:/bin"],
        **config,
    )
    rec = ImageRecord(
        id=image_id(n),
        repo_tags=list(tags if tags is not None else ["busybox:latest"]),
        layers=["sha256:" + hashlib.sha256(f"layer{n}".encode()).hexdigest()],
        size=1234,
        created="2024-01-01T00:00:00Z",
        architecture="amd64",
        os="linux",
        config=cfg,
    )
    return asdict(rec)


def image_archive(*records: dict[str, Any]) -> bytes:
    return json.dumps(list(records)).encode()


def _record(d: dict[str, Any]) -> ImageRecord:
    return ImageRecord(**{**d, "config": ImageConfig(**d["config"])})


def exit_code_for(signal: str) -> int:
    return 128 + int(signals.Signals[signal])


class FakeExec:
    """``echo A B`` prints its args; ``fail`` writes to stderr and exits 2; ``cat`` echoes stdin until
    EOF; ``boom`` breaks while reading output. Resizes are recorded."""

    def __init__(self, spec: ExecSpec) -> None:
        self.spec = spec
        self.queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self.resizes: list[tuple[int, int]] = []
        self.killed = False
        self.code = 0
        cmd = spec.args[0]
        if cmd == "echo":
            self.queue.put_nowait(("stdout", (" ".join(spec.args[1:]) + "\n").encode()))
            self.queue.put_nowait(None)
        elif cmd == "fail":
            self.queue.put_nowait(("stderr", b"oops\n"))
            self.queue.put_nowait(None)
            self.code = 2

    async def write(self, data: bytes) -> None:
        self.queue.put_nowait(("stdout", data))

    async def close_stdin(self) -> None:
        self.queue.put_nowait(None)

    async def resize(self, rows: int, cols: int) -> None:
        self.resizes.append((rows, cols))

    async def output(self) -> AsyncIterator[tuple[str, bytes]]:
        if self.spec.args[0] == "boom":
            raise RuntimeFailure("the runtime lost the process")
        while (item := await self.queue.get()) is not None:
            yield item

    async def wait(self) -> int:
        return 137 if self.killed else self.code

    async def kill(self) -> None:
        self.killed = True
        self.queue.put_nowait(None)

    async def pid(self) -> int:
        return 4242


@dataclass
class FakeAgent:
    host: str = "host-1"
    control: ControlPlane | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)
    images: dict[str, ImageRecord] = field(default_factory=dict)
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    specs: dict[str, InstanceSpec] = field(default_factory=dict)
    running: dict[str, int] = field(default_factory=dict)
    logs_of: dict[str, list[LogEntry]] = field(default_factory=dict)
    execs: list[FakeExec] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)
    """Method name -> error that method raises (once)."""
    exit_during_start: dict[str, ExitInfo] = field(default_factory=dict)
    """Instance id -> exit reported *before* start_instance returns (a command that ends at once)."""
    received: list[int] = field(default_factory=list)
    """Sizes of the streams that imports and builds read, chunk by chunk."""
    next_pid: int = 1000
    pullable: dict[str, ImageRecord] = field(default_factory=dict)
    """Reference as given to pull_image -> the image a pull of it yields."""
    disk_total: int = 1 << 40
    disk_other: int = 0
    """Bytes of the image filesystem taken by other things than images."""
    routers: list[RouterSpec] = field(default_factory=list)
    """What the last ``routing_changed`` fetched."""

    policies: list[HostSecurity] = field(default_factory=list)
    """Every security policy ``refresh_security`` fetched, oldest first."""
    staged: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """Writable layers received for a migration, not installed yet."""

    @property
    def host_id(self) -> str:
        return self.host

    def _call(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))
        if name in self.fail:
            raise self.fail.pop(name)

    def called(self, name: str) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]

    async def _read(self, chunks: AsyncIterator[bytes]) -> bytes:
        parts = [c async for c in chunks]
        self.received.append(len(parts))
        return b"".join(parts)

    async def import_images(self, archive: AsyncIterator[bytes]) -> list[ImageRecord]:
        data = await self._read(archive)
        self._call("import_images", len(data))
        try:
            records = [_record(d) for d in json.loads(data)]
        except (ValueError, TypeError, KeyError) as e:
            raise BadImage(f"archive: not an image archive: {e}") from e
        for rec in records:
            self.images[rec.id] = rec
        return records

    async def build_image(
        self, rootfs_tar: AsyncIterator[bytes], config: ImageConfig, created: str = ""
    ) -> ImageRecord:
        data = await self._read(rootfs_tar)
        self._call("build_image", config)
        digest = hashlib.sha256(data + json.dumps(config.to_oci(), sort_keys=True).encode()).hexdigest()
        rec = ImageRecord(
            id=f"sha256:{digest}",
            repo_tags=[],
            layers=["sha256:" + hashlib.sha256(data).hexdigest()],
            size=len(data),
            created=utcnow(),
            architecture="amd64",
            os="linux",
            config=config,
        )
        self.images[rec.id] = rec
        return rec

    async def image_present(self, image_id: str) -> bool:
        return image_id in self.images

    async def export_images(self, images: Mapping[str, list[str]]) -> AsyncIterator[bytes]:
        # The fake's archive format is its import format: a JSON list of records.
        self._call("export_images", dict(images))
        missing = [i for i in images if i not in self.images]
        if missing:
            raise NotFound(f"image {missing[0]} is not on this host")
        records = [{**asdict(self.images[i]), "repo_tags": tags} for i, tags in images.items()]
        yield json.dumps(records).encode()

    async def image_disk_usage(self) -> ImageDiskUsage:
        held = sum(r.size for r in self.images.values())
        free = self.disk_total - self.disk_other - held
        return ImageDiskUsage(total=self.disk_total, free=free, images=held)

    async def pull_image(
        self, reference: str, credentials: Mapping[str, Credential]
    ) -> AsyncIterator[PullEvent]:
        """Pulls whatever ``pullable`` holds under ``reference``; credentials are recorded."""
        self._call("pull_image", (reference, dict(credentials)))
        rec = self.pullable.get(reference)
        if rec is None:
            raise NotFound(f"{reference}: manifest unknown")
        yield TransferEvent("Downloading", "abc", 1, 2)
        self.images[rec.id] = rec
        yield Pulled(rec, "sha256:" + hashlib.sha256(rec.id.encode()).hexdigest())

    async def push_image(
        self, image_id: str, reference: str, credentials: Mapping[str, Credential]
    ) -> AsyncIterator[PushEvent]:
        self._call("push_image", (image_id, reference, dict(credentials)))
        if image_id not in self.images:
            raise NotFound(f"image {image_id} is not on this host")
        yield TransferEvent("Pushed", "abc", 2, 2)
        yield Pushed("sha256:" + hashlib.sha256(reference.encode()).hexdigest(), 100)

    async def export_image(self, image_id: str) -> AsyncIterator[bytes]:
        """The fake archive format ``import_images`` reads, in two chunks."""
        self._call("export_image", image_id)
        rec = self.images.get(image_id)
        if rec is None:
            raise NotFound(f"image {image_id} is not on this host")
        data = image_archive({**asdict(rec), "config": asdict(rec.config)})
        yield data[:10]
        yield data[10:]

    async def registry_login(self, registry: str, credential: Credential) -> None:
        self._call("registry_login", (registry, credential))

    async def remove_image(self, image_id: str) -> None:
        self._call("remove_image", image_id)
        self.images.pop(image_id, None)

    async def create_instance(self, spec: InstanceSpec) -> None:
        self._call("create_instance", spec)
        if spec.image_id not in self.images:
            raise NotFound(f"image {spec.image_id} is not on this host")
        self.specs[spec.id] = spec
        if spec.ports:  # as the agent: it loads the host's policy with the instance's veths
            await self.refresh_security()

    async def start_instance(self, spec: InstanceSpec) -> RuntimeState:
        self._call("start_instance", spec.id)
        if spec.id not in self.specs:
            raise RuntimeFailure(f"instance {spec.id} was never created here")
        self.next_pid += 1
        started = utcnow()
        early = self.exit_during_start.pop(spec.id, None)
        if early is not None:
            assert self.control is not None
            await self.control.instance_exited(self.host, spec.id, early)
        else:
            self.running[spec.id] = self.next_pid
        return RuntimeState(id=spec.id, running=True, pid=self.next_pid, started_at=started)

    async def exit(
        self, instance_id: str, code: int, *, oom: bool = False, finished_at: str = "", error: str = ""
    ) -> float | None:
        """Make a running instance end, and report it as the agent would."""
        assert self.control is not None
        self.running.pop(instance_id, None)
        info = ExitInfo(exit_code=code, oom_killed=oom, finished_at=finished_at or utcnow(), error=error)
        return await self.control.instance_exited(self.host, instance_id, info)

    async def stop_instance(self, instance_id: str, signal: str, timeout: float) -> None:
        self._call("stop_instance", (instance_id, signal, timeout))
        if instance_id in self.running:
            await self.exit(instance_id, exit_code_for(signal))

    async def signal_instance(self, instance_id: str, signal: str) -> None:
        self._call("signal_instance", (instance_id, signal))
        if instance_id not in self.running:
            raise RuntimeFailure(f"instance {instance_id} is not running")
        if signal in TERMINATING:
            await self.exit(instance_id, exit_code_for(signal))

    async def remove_instance(self, instance_id: str) -> None:
        self._call("remove_instance", instance_id)
        if instance_id in self.running:
            await self.exit(instance_id, exit_code_for("SIGKILL"))
        self.specs.pop(instance_id, None)

    async def logs(
        self, instance_id: str, *, follow: bool = False, tail: int | None = None, since: str = ""
    ) -> AsyncIterator[LogEntry]:
        self.calls.append(("logs", (instance_id, follow, tail, since)))
        entries = self.logs_of.get(instance_id, [])
        for entry in entries if tail is None else entries[len(entries) - tail :]:
            yield entry

    async def names_changed(self, network_ids: list[str]) -> None:
        self._call("names_changed", network_ids)

    async def exec(self, instance_id: str, spec: ExecSpec) -> FakeExec:
        self._call("exec", (instance_id, spec))
        proc = FakeExec(spec)
        self.execs.append(proc)
        return proc

    async def refresh_overlay(self) -> None:
        self._call("refresh_overlay")

    async def remove_volume(self, volume_id: str) -> None:
        self._call("remove_volume", volume_id)

    async def write_stdin(self, instance_id: str, data: bytes) -> None:
        self._call("write_stdin", (instance_id, data))

    async def close_stdin(self, instance_id: str) -> None:
        self._call("close_stdin", instance_id)

    async def resize_tty(self, instance_id: str, rows: int, cols: int) -> None:
        self._call("resize_tty", (instance_id, rows, cols))

    async def routing_changed(self) -> None:
        """As the real agent: fetch this host's routers from the control plane (kept in ``routers``)."""
        self._call("routing_changed")
        assert self.control is not None
        self.routers = await self.control.routers(self.host)

    async def refresh_security(self) -> None:
        """Fetches the host's policy through the real control plane, as the agent does; kept apart
        from ``calls`` (every change of membership refreshes)."""
        if self.control is not None:
            self.policies.append(await self.control.security(self.host))

    async def pause_instance(self, instance_id: str) -> None:
        self._call("pause_instance", instance_id)

    async def unpause_instance(self, instance_id: str) -> None:
        self._call("unpause_instance", instance_id)

    async def instance_top(self, instance_id: str, ps_args: str) -> ProcessTable:
        self._call("instance_top", (instance_id, ps_args))
        return ProcessTable(titles=["PID", "CMD"])

    async def instance_stats(self, instance_id: str) -> InstanceStats:
        self._call("instance_stats", instance_id)
        return InstanceStats("", 0, 0, 0, 0, 1, 0, 0, 0, 0, 0)

    async def update_resources(self, instance_id: str, resources: Resources) -> None:
        self._call("update_resources", (instance_id, resources))

    async def image_history(self, image_id: str) -> list[HistoryEntry]:
        self._call("image_history", image_id)
        record = self.images.get(image_id)
        if record is None:
            raise NotFound(f"image {image_id!r} is not on this host")
        size = record.size // max(len(record.layers), 1)
        return [HistoryEntry(record.created, "fake", "", False, size, layer) for layer in record.layers]

    # Root filesystem files: the fake holds an in-memory tree per instance, {path: bytes}.
    async def instance_path_stat(self, instance_id: str, layers: list[str], path: str) -> PathStat:
        self._call("instance_path_stat", (instance_id, path))
        data = self.files.get(instance_id, {}).get(path)
        if data is None:
            raise NotFound(f"no such file or directory: {path}")
        return PathStat(path.rsplit("/", 1)[-1], len(data), 0o644, "2024-01-01T00:00:00.000000000Z")

    async def instance_archive(
        self, instance_id: str, layers: list[str], path: str, *, contents: bool = False
    ) -> AsyncIterator[bytes]:
        self._call("instance_archive", (instance_id, path, contents))
        yield json.dumps({p: d.decode() for p, d in self.files.get(instance_id, {}).items()}).encode()

    async def extract_to_instance(
        self, instance_id: str, layers: list[str], path: str, archive: AsyncIterator[bytes]
    ) -> None:
        data = await self._read(archive)
        self._call("extract_to_instance", (instance_id, path))
        for name, content in json.loads(data).items():
            self.files.setdefault(instance_id, {})[f"{path.rstrip('/')}/{name}"] = content.encode()

    async def instance_changes(self, instance_id: str, layers: list[str]) -> list[FileChange]:
        self._call("instance_changes", instance_id)
        return [FileChange(p, ChangeKind.ADDED) for p in sorted(self.files.get(instance_id, {}))]

    async def instance_size_rw(self, instance_id: str) -> int:
        self._call("instance_size_rw", instance_id)
        return sum(len(d) for d in self.files.get(instance_id, {}).values())

    async def replug_instance(self, spec: InstanceSpec) -> None:
        self._call("replug_instance", spec)
        self.specs[spec.id] = spec

    async def export_writable(self, instance_id: str, since: float = 0.0) -> AsyncIterator[bytes]:
        self._call("export_writable", (instance_id, since))
        yield json.dumps({k: v.decode() for k, v in self.files.get(instance_id, {}).items()}).encode()

    async def receive_writable(self, instance_id: str, archive: AsyncIterator[bytes]) -> None:
        data = await self._read(archive)
        self._call("receive_writable", instance_id)
        self.staged[instance_id] = {k: v.encode() for k, v in json.loads(data).items()}

    async def install_writable(self, instance_id: str) -> None:
        self._call("install_writable", instance_id)
        self.files[instance_id] = self.staged.pop(instance_id)

    async def discard_writable(self, instance_id: str) -> None:
        self._call("discard_writable", instance_id)
        self.staged.pop(instance_id, None)

    async def fence(self, keep: list[str]) -> list[str]:
        self._call("fence", keep)
        stale = sorted(set(self.specs) - set(keep))
        for instance_id in stale:
            self.specs.pop(instance_id, None)
            self.running.pop(instance_id, None)
        return stale
