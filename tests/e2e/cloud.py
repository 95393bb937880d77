"""A real single-node cloud (`atoll up`) in a subprocess, with its own data dir, port and cgroup parent."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from atoll.client import AtollAPI
from tests.prefix import RUN_PREFIX

ATOLL = str(Path(sys.executable).parent / "atoll")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cloud:
    base: Path
    port: int = field(default_factory=free_port)
    cgroup_parent: str = field(default_factory=lambda: f"{RUN_PREFIX}-{uuid.uuid4().hex[:6]}")
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "ATOLL_URL": self.url,
            "ATOLL_DATA_DIR": str(self.data_dir),
            "ATOLL_RUN_DIR": str(self.base / "run"),
            "ATOLL_API_PORT": str(self.port),
            "ATOLL_CGROUP_PARENT": self.cgroup_parent,
            "ATOLL_RECONCILE_INTERVAL": "1",
            "TMPDIR": str(self.tmp),  # what the server leaves in its temp dir is checked at teardown
        }

    @property
    def tmp(self) -> Path:
        return self.base / "tmp"

    def api(self, project: str = "default") -> AtollAPI:
        return AtollAPI(self.url, project=project)

    def start(self) -> None:
        self.tmp.mkdir(exist_ok=True)
        log = open(self.base / "atoll-up.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [ATOLL, "up"], env=self.env, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"atoll up exited: {(self.base / 'atoll-up.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v1/projects/default/images/busybox", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("atoll up did not become ready in 60 s")

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()
            self.proc = None

    def cli(
        self, *args: str, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([ATOLL, *args], env=self.env, input=input, capture_output=True, timeout=timeout)

    def teardown(self) -> None:
        """Remove every instance through the API, stop the cloud, and clear what the runtime leaves."""
        if self.proc is not None:
            api = self.api()
            for inst in api.instances(all=True):
                with contextlib.suppress(Exception):
                    api.remove_instance(inst.id, force=True)
            self.stop()
        for hierarchy in CGROUP_ROOT.iterdir():
            parent = hierarchy / self.cgroup_parent
            if parent.is_dir():
                for child in parent.iterdir():
                    if child.is_dir():
                        child.rmdir()
                parent.rmdir()
        left = sorted(p.name for p in self.tmp.iterdir()) if self.tmp.exists() else []
        shutil.rmtree(self.base, ignore_errors=True)
        assert not left, f"the cloud left temporary files behind: {left}"
