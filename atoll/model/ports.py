"""The two boundaries between controller and agent, as structural protocols.

``HostAgent`` is what the controller may ask of one host. ``ControlPlane`` is what an agent may ask of
the controller. In ``atoll up`` both are plain in-process objects; in a cluster they are HTTP clients.
Neither side imports the other: each only sees these protocols and the data in ``atoll.model``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from atoll.model.cluster import HostReport
from atoll.model.dnsrecords import NetworkNames
from atoll.model.image import ImageConfig, ImageDiskUsage, ImageRecord
from atoll.model.imagehistory import HistoryEntry
from atoll.model.instance import ExitInfo, InstanceSpec, InstanceStatus, LogEntry, Resources, RuntimeState
from atoll.model.overlay import HostNetworkReport, OverlayNetwork
from atoll.model.registry import Credential, PullEvent, PushEvent
from atoll.model.rootfiles import FileChange, PathStat
from atoll.model.routing import RouterSpec
from atoll.model.secgroups import HostSecurity
from atoll.model.usage import InstanceStats, ProcessTable


@dataclass(frozen=True)
class ExecSpec:
    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = ""
    user: str = ""
    tty: bool = False
    stdin: bool = False


class ExecProcess(Protocol):
    """A process started inside a running instance. Mirrors a subprocess: feed stdin, read output, wait."""

    async def write(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def resize(self, rows: int, cols: int) -> None: ...

    def output(self) -> AsyncIterator[tuple[str, bytes]]:
        """Yields (stream, chunk) until the process's output ends; stream is "stdout" or "stderr"."""
        ...

    async def wait(self) -> int: ...

    async def kill(self) -> None: ...

    async def pid(self) -> int:
        """The process's pid on its host (what ``docker exec inspect`` shows); 0 if it never started."""
        ...


class HostAgent(Protocol):
    @property
    def host_id(self) -> str: ...

    async def import_images(self, archive: AsyncIterator[bytes]) -> list[ImageRecord]:
        """Import a ``docker save`` or OCI image-layout tar stream; all-or-nothing."""
        ...

    async def build_image(
        self, rootfs_tar: AsyncIterator[bytes], config: ImageConfig, created: str = ""
    ) -> ImageRecord:
        """Make a one-layer image from a root filesystem tar stream. ``created`` (RFC 3339) fixes the
        config's creation time, so the same input builds the same image id on every host; empty: now."""
        ...

    def export_images(self, images: Mapping[str, list[str]]) -> AsyncIterator[bytes]:
        """A ``docker save`` tar stream of the images held here (image id -> the tags to give it)."""
        ...

    async def image_present(self, image_id: str) -> bool: ...

    async def image_disk_usage(self) -> ImageDiskUsage:
        """The image store's filesystem: total and free bytes, and what the images take."""
        ...

    def pull_image(self, reference: str, credentials: Mapping[str, Credential]) -> AsyncIterator[PullEvent]:
        """Pull from a registry: progress events, then one ``Pulled``; all-or-nothing.

        ``credentials`` maps registry hosts to logins; each is only sent to its own host."""
        ...

    def push_image(
        self, image_id: str, reference: str, credentials: Mapping[str, Credential]
    ) -> AsyncIterator[PushEvent]:
        """Push an image held by this host to ``reference``: progress events, then one ``Pushed``."""
        ...

    def export_image(self, image_id: str) -> AsyncIterator[bytes]:
        """The image as an OCI image-layout tar stream, for another host's ``import_images``.
        BadImage if its layers keep no blob (images imported from archives)."""
        ...

    async def registry_login(self, registry: str, credential: Credential) -> None:
        """Check that ``registry`` accepts ``credential``; RegistryAuthError if not."""
        ...

    async def remove_image(self, image_id: str) -> None:
        """Forget an image on this host and free layers that nothing else uses."""
        ...

    async def create_instance(self, spec: InstanceSpec) -> None: ...

    async def start_instance(self, spec: InstanceSpec) -> RuntimeState: ...

    async def stop_instance(self, instance_id: str, signal: str, timeout: float) -> None:
        """Signal, wait up to ``timeout`` seconds, then SIGKILL. Returns once the instance has exited."""
        ...

    async def signal_instance(self, instance_id: str, signal: str) -> None: ...

    async def remove_instance(self, instance_id: str) -> None:
        """Kill if running, then remove every trace: runtime state, mounts, cgroups, files."""
        ...

    def logs(
        self, instance_id: str, *, follow: bool = False, tail: int | None = None, since: str = ""
    ) -> AsyncIterator[LogEntry]: ...

    async def exec(self, instance_id: str, spec: ExecSpec) -> ExecProcess: ...

    async def refresh_overlay(self) -> None:
        """Fetch the overlay forwarding entries now (ports of an overlay network came or went elsewhere)."""
        ...

    async def remove_volume(self, volume_id: str) -> None:
        """Delete a volume's data on this host, if it has any. Idempotent."""
        ...

    async def write_stdin(self, instance_id: str, data: bytes) -> None:
        """Feed the main process's stdin (``process.stdin`` instances); waits while it is full."""
        ...

    async def close_stdin(self, instance_id: str) -> None:
        """The main process reads end-of-file once what was written before is consumed."""
        ...

    async def resize_tty(self, instance_id: str, rows: int, cols: int) -> None:
        """Set the size of the main process's terminal (``tty`` instances)."""
        ...

    async def routing_changed(self) -> None:
        """Routers or floating IPs changed: fetch this host's routers (``ControlPlane.routers``) and
        converge them now rather than at the next reconcile."""
        ...

    async def refresh_security(self) -> None:
        """Fetch this host's security groups (``ControlPlane.security``) again and apply them now."""
        ...

    async def names_changed(self, network_ids: list[str]) -> None:
        """Names on these networks changed: fetch them again now (``ControlPlane.network_names``), so a
        change resolves once the controller's call returns rather than at the next reconcile."""
        ...

    async def pause_instance(self, instance_id: str) -> None:
        """Freeze every process of a running instance (the cgroup freezer)."""
        ...

    async def unpause_instance(self, instance_id: str) -> None: ...

    async def instance_top(self, instance_id: str, ps_args: str) -> ProcessTable:
        """``ps`` (with ``ps_args``, default ``-ef``) limited to the instance's processes."""
        ...

    async def instance_stats(self, instance_id: str) -> InstanceStats: ...

    async def update_resources(self, instance_id: str, resources: Resources) -> None:
        """Apply new limits to a running instance at once (they are kept in its spec for later runs)."""
        ...

    async def image_history(self, image_id: str) -> list[HistoryEntry]:
        """The steps of an image's config history, oldest first, with the sizes of their layers."""
        ...

    async def instance_path_stat(self, instance_id: str, layers: list[str], path: str) -> PathStat:
        """Stat ``path`` inside the instance's root filesystem (running or stopped; ``layers``: its image)."""
        ...

    def instance_archive(
        self, instance_id: str, layers: list[str], path: str, *, contents: bool = False
    ) -> AsyncIterator[bytes]:
        """A tar of ``path`` in the instance's root filesystem, named by its last component;
        ``contents``: a directory's entries, relative to it (``/`` with it: the whole root)."""
        ...

    async def extract_to_instance(
        self, instance_id: str, layers: list[str], path: str, archive: AsyncIterator[bytes]
    ) -> None:
        """Unpack a tar into the directory ``path`` of the instance's root filesystem."""
        ...

    async def instance_changes(self, instance_id: str, layers: list[str]) -> list[FileChange]:
        """What the instance's writable layer adds, changes and deletes."""
        ...

    async def instance_size_rw(self, instance_id: str) -> int:
        """The bytes of the files in the instance's writable layer."""
        ...

    async def replug_instance(self, spec: InstanceSpec) -> None:
        """Converge the NICs of an instance held here (created, running or stopped) to ``spec.ports``:
        hot-plug new ones, remove the others. Conflict if it runs without a namespace of its own."""
        ...

    def export_writable(self, instance_id: str, since: float = 0.0) -> AsyncIterator[bytes]:
        """The instance's writable layer as a tar (cold migration): every entry, or with ``since``
        (unix time) those changed at or after it, plus a manifest of every path it holds."""
        ...

    async def receive_writable(self, instance_id: str, archive: AsyncIterator[bytes]) -> None:
        """Stage a tar from another host's ``export_writable`` for this instance (applied on top of
        what was staged before; paths missing from its manifest are dropped)."""
        ...

    async def install_writable(self, instance_id: str) -> None:
        """Make the staged layer the (created, not running) instance's writable layer."""
        ...

    async def discard_writable(self, instance_id: str) -> None:
        """Drop a staged layer (a migration that did not complete)."""
        ...

    async def fence(self, keep: list[str]) -> list[str]:
        """Kill and remove every local instance not in ``keep``; returns the ids removed."""
        ...


@dataclass(frozen=True)
class Assignment:
    """One instance the controller has placed on a host, with the controller's view of it."""

    spec: InstanceSpec
    desired_running: bool
    status: InstanceStatus
    restart_at: float = 0.0  # unix time; for RESTARTING, when the back-off ends


class ControlPlane(Protocol):
    async def assignments(self, host_id: str) -> list[Assignment]: ...

    async def instance_started(self, host_id: str, state: RuntimeState) -> None: ...

    async def instance_exited(self, host_id: str, instance_id: str, exit: ExitInfo) -> float | None:
        """Record an exit. Returns the back-off in seconds if the restart policy restarts it, else None."""
        ...

    async def overlay_networks(self, host_id: str) -> list[OverlayNetwork]:
        """Every overlay network with a port on ``host_id``, with its remote ports and peer hosts."""
        ...

    async def report_host_network(self, host_id: str, report: HostNetworkReport) -> None:
        """The host's underlay address and MTU and its own networks (replaces the previous report)."""
        ...

    async def routers(self, host_id: str) -> list[RouterSpec]:
        """The routers ``host_id`` realises, with their legs, routes and floating IPs."""
        ...

    async def security(self, host_id: str) -> HostSecurity:
        """The security groups of the ports on ``host_id``, resolved for enforcement."""
        ...

    async def network_names(self, host_id: str) -> list[NetworkNames]:
        """The names of every network that has a port on ``host_id``, for the host's resolvers."""
        ...

    async def heartbeat(self, host_id: str, report: HostReport) -> None:
        """The host is alive, reachable at ``report.address``, with this capacity and measured use."""
        ...

    async def controllers(self, host_id: str) -> list[str]:
        """The cluster addresses of every controller serving this cloud, most recently alive first: where
        an agent turns when the controller it talks to stops answering. Empty under ``atoll up``."""
        ...
