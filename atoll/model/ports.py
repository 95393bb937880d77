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
from atoll.model.image import ImageConfig, ImageRecord
from atoll.model.instance import ExitInfo, InstanceSpec, InstanceStatus, LogEntry, RuntimeState
from atoll.model.registry import Credential, PullEvent, PushEvent


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

    async def image_present(self, image_id: str) -> bool: ...

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

    async def heartbeat(self, host_id: str, report: HostReport) -> None:
        """The host is alive, reachable at ``report.address``, with this capacity and measured use."""
        ...
