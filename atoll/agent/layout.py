"""Where one instance lives on a host. One directory per instance, so removal is one ``rmtree``.

The directory survives agent restarts: it holds everything needed to adopt a running container again
or to learn how it ended (the log written by the container's init and its exit-status file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class InstanceLayout:
    root: Path

    @property
    def upper(self) -> Path:
        """The writable layer; it persists across stop/start."""
        return self.root / "upper"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def rootfs(self) -> Path:
        """Where the overlay is mounted while the instance runs."""
        return self.root / "rootfs"

    @property
    def bundle(self) -> Path:
        """The OCI bundle directory (holds config.json)."""
        return self.root

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def log(self) -> Path:
        """Output in CRI log format, appended by the container's own init."""
        return self.root / "container.log"

    @property
    def exit_file(self) -> Path:
        """``<exit_code> <signal>`` written by the container's init when its main process ends."""
        return self.root / "exit"

    @property
    def stdin(self) -> Path:
        """The FIFO an instance with stdin reads from, through its init (see docs/runtime.md)."""
        return self.root / "stdin"

    @property
    def pid_file(self) -> Path:
        return self.root / "init.pid"

    @property
    def etc(self) -> Path:
        """Files bind-mounted over the image's /etc/hosts, /etc/hostname and /etc/resolv.conf."""
        return self.root / "etc"


def instance_layout(data_dir: Path, instance_id: str) -> InstanceLayout:
    return InstanceLayout(data_dir / "instances" / instance_id)
