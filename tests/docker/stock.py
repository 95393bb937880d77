"""A stock dockerd (Debian `docker.io`), started privately so Atoll can be compared with the real thing.

Everything the daemon owns lives under one temp dir (``base``): its data root, exec root, pid file and
API socket; dockerd runs its own managed containerd, whose state, root and socket go under those two
roots as well. It never touches the host's network: `--iptables=false --ip6tables=false --bridge=none`
(no docker0, no rules; containers get network mode ``none``, which is what Atoll's `default` gives
today too: loopback only) and an unreachable HTTP(S) proxy so that any pull fails instead of reaching
Docker Hub. Containers go under the cgroup parent ``cgroup_parent`` (the run's prefix), so the suite's
leak guard would see a container that outlived the daemon.

Its busybox image is the same content as Atoll's starter image: a `docker load` of a docker-archive
tar whose only layer is :func:`atoll.agent.images.busybox_rootfs_tar` with the starter's config.

:meth:`StockDockerd.stop` removes every container, stops dockerd (which stops its containerd), and clears
what could be left: mounts under ``base``, the cgroup parent, and stray processes of the daemon.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from atoll.agent.images import busybox_rootfs_tar
from atoll.node import STARTER_CONFIG, STARTER_IMAGE

DOCKERD = "/usr/sbin/dockerd"
CONTAINERD = "/usr/bin/containerd"
DOCKER_CLI = "/usr/local/bin/docker"
CGROUP_ROOT = Path("/sys/fs/cgroup")
NO_PROXY_PORT = "http://127.0.0.1:9"
"""The discard port on loopback: nothing listens, so a pull fails at once instead of going out."""


class DockerdUnavailable(RuntimeError):
    """dockerd is not installed or could not start here; the message says exactly why."""


def missing_binaries() -> list[str]:
    return [p for p in (DOCKERD, CONTAINERD, DOCKER_CLI) if not os.access(p, os.X_OK)]


@dataclass
class StockDockerd:
    base: Path
    cgroup_parent: str
    proc: subprocess.Popen[bytes] | None = None
    pids: set[int] = field(default_factory=set)

    @property
    def socket(self) -> Path:
        return self.base / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log_path(self) -> Path:
        return self.base / "dockerd.log"

    def cli_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        return {**env, "DOCKER_HOST": self.host, "DOCKER_CONFIG": "/nonexistent-atoll-docker-config"}

    def docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DOCKER_CLI, *args], env=self.cli_env(), capture_output=True, text=True, timeout=timeout
        )

    def start(self, timeout: float = 60) -> None:
        missing = missing_binaries()
        if missing:
            raise DockerdUnavailable(f"not installed: {', '.join(missing)} (Debian: docker.io containerd)")
        self.base.mkdir(parents=True, exist_ok=True)
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("DOCKER_") and "proxy" not in k.lower()
        }
        env.update(HTTP_PROXY=NO_PROXY_PORT, HTTPS_PROXY=NO_PROXY_PORT, NO_PROXY="")
        argv = [
            DOCKERD,
            "--data-root", str(self.base / "data"),
            "--exec-root", str(self.base / "exec"),
            "--pidfile", str(self.base / "dockerd.pid"),
            "--host", self.host,
            "--config-file", str(self._config_file()),
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--bridge=none",
            "--userland-proxy=false",
            "--storage-driver=overlay2",
            "--exec-opt", "native.cgroupdriver=cgroupfs",
            "--cgroup-parent", f"/{self.cgroup_parent}",
            "--log-level=warn",
        ]  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                raise DockerdUnavailable(f"dockerd exited: {self._log_tail()}")
            if (
                self.socket.exists()
                and self.docker("version", "--format", "{{.Server.Version}}").returncode == 0
            ):
                self._remember_pids()
                return
            time.sleep(0.1)
        raise DockerdUnavailable(f"dockerd did not answer in {timeout:.0f} s: {self._log_tail()}")

    def _config_file(self) -> Path:
        """An empty daemon.json of our own, so a host's /etc/docker/daemon.json cannot change the setup."""
        path = self.base / "daemon.json"
        path.write_text("{}\n")
        return path

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def _remember_pids(self) -> None:
        """dockerd, its containerd and the shims: every process whose command line names our dirs."""
        base = str(self.base).encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                if base in Path(f"/proc/{pid}/cmdline").read_bytes():
                    self.pids.add(int(pid))

    def processes(self) -> list[int]:
        """The daemon side now running: dockerd, containerd, the shims."""
        self.pids.clear()
        self._remember_pids()
        return sorted(self.pids)

    def load_busybox(self) -> str:
        """`docker load` the starter image's content as busybox:latest; returns the image id."""
        tar = self.base / "busybox-image.tar"
        write_busybox_archive(tar, self.base / "rootfs.tar")
        proc = subprocess.run(
            [DOCKER_CLI, "load", "-i", str(tar)], env=self.cli_env(), capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise DockerdUnavailable(f"docker load failed: {proc.stderr}")
        tar.unlink()
        return self.docker("image", "inspect", "--format", "{{.Id}}", STARTER_IMAGE).stdout.strip()

    def stop(self) -> None:
        """Remove every container, stop dockerd and its containerd, and clear whatever they left."""
        if self.proc is not None:
            # A daemon too busy to answer must not keep the rest of the clean-up from running.
            with contextlib.suppress(subprocess.TimeoutExpired):
                listed = self.docker("ps", "-aq", timeout=30).stdout.split()
                if listed:
                    self.docker("rm", "-f", "-v", *listed, timeout=120)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        # Shims outlive dockerd on purpose (containers survive a daemon restart); ours must not.
        self.pids.clear()  # only those still running now: a remembered pid may have been reused
        self._remember_pids()
        for pid in list(self.pids) + self._cgroup_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self._unmount_under_base()
        self._remove_cgroup_parent()
        shutil.rmtree(self.base, ignore_errors=True)

    def _cgroup_pids(self) -> list[int]:
        pids: list[int] = []
        for procs in CGROUP_ROOT.glob(f"*/{self.cgroup_parent}/**/cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids += [int(p) for p in procs.read_text().split()]
        return pids

    def _unmount_under_base(self) -> None:
        base = str(self.base.resolve())
        for _ in range(3):
            with open("/proc/self/mountinfo") as f:
                points = [line.split()[4] for line in f]
            mine = [p for p in points if p == base or p.startswith(base + "/")]
            if not mine:
                return
            for point in sorted(mine, key=len, reverse=True):
                subprocess.run(["umount", "-l", point], check=False, capture_output=True)

    def _remove_cgroup_parent(self) -> None:
        for _ in range(50):
            left = False
            for hierarchy in CGROUP_ROOT.iterdir():
                parent = hierarchy / self.cgroup_parent
                if not parent.is_dir():
                    continue
                # Deepest first: a cgroup can only go once it has no children.
                for child in sorted(parent.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                    if child.is_dir():
                        with contextlib.suppress(OSError):
                            child.rmdir()
                try:
                    parent.rmdir()
                except OSError:
                    left = True
            if not left:
                return
            time.sleep(0.1)


def write_busybox_archive(dest: Path, scratch: Path) -> None:
    """A `docker save`-format tar: the starter rootfs as the only layer, with the starter's config."""
    busybox_rootfs_tar(scratch)
    layer = scratch.read_bytes()
    scratch.unlink()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Cmd": STARTER_CONFIG.cmd,
            "Env": STARTER_CONFIG.env,
            "Labels": STARTER_CONFIG.labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "busybox_rootfs_tar"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.split(":", 1)[1] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [STARTER_IMAGE], "Layers": [layer_name]}]
    with tarfile.open(dest, "w") as out:
        for name, data in (
            (layer_name, layer),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
