"""A real single-node cloud (`atoll up`) in a subprocess, with its own data dir, port and cgroup parent."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from atoll.client import AtollAPI
from tests.prefix import NET_PREFIX, NFT_TABLE, RUN_PREFIX

ATOLL = str(Path(sys.executable).parent / "atoll")
_NET_SUFFIXES = itertools.cycle("abcdefghijklmnopqrstuvwxyz0123456789")
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
    net_prefix: str = field(default_factory=lambda: NET_PREFIX + next(_NET_SUFFIXES))
    """This cloud's own link prefix (clouds of one run may be up at the same time)."""
    docker_port: int = field(default_factory=free_port)
    """The Docker API's TCP port; its unix socket is ``docker_socket``."""
    extra_env: dict[str, str] = field(default_factory=dict)
    """More settings for `atoll up` and the CLI (registry mirrors, insecure registries...)."""
    server: list[str] = field(default_factory=lambda: [ATOLL])
    """The command run with ``up`` to start the cloud (a test may run it through a wrapper of its own)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def docker_socket(self) -> Path:
        return self.base / "run" / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.docker_socket}"

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
            "ATOLL_NET_PREFIX": self.net_prefix,
            "ATOLL_NFT_TABLE": self.nft_table,
            "ATOLL_DOCKER_SOCKET": str(self.docker_socket),
            "ATOLL_DOCKER_TCP": f"127.0.0.1:{self.docker_port}",
            "ATOLL_PUBLISH_CIDR": self.publish_cidr,
            "ATOLL_IP_FORWARD": "0",  # never the machine's global switch; tests turn on their own veths
            "TMPDIR": str(self.tmp),  # what the server leaves in its temp dir is checked at teardown
            **self.extra_env,
        }

    @property
    def nft_table(self) -> str:
        return f"{NFT_TABLE}_{self.net_prefix[-1]}"

    @property
    def publish_cidr(self) -> str:
        """This cloud's own addresses for publishing veths: clouds of this and other runs share the host,
        so a /26 of 169.254.1.0-169.254.160.255 picked by the cloud's net prefix."""
        block = int(hashlib.sha256(self.net_prefix.encode()).hexdigest(), 16) % 640
        return f"169.254.{1 + block // 4}.{(block % 4) * 64}/26"

    @property
    def tmp(self) -> Path:
        return self.base / "tmp"

    def api(self, project: str = "default") -> AtollAPI:
        return AtollAPI(self.url, project=project)

    def start(self) -> None:
        self.tmp.mkdir(exist_ok=True)
        log = open(self.base / "atoll-up.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [*self.server, "up"], env=self.env, stdout=log, stderr=log, start_new_session=True
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

    @contextlib.contextmanager
    def running(self) -> Iterator[Cloud]:
        """Started for the ``with`` block, torn down after it (a fixture's ``yield`` inside)."""
        self.start()
        try:
            yield self
        finally:
            self.teardown()

    def teardown(self) -> None:
        """Remove every instance through the API, stop the cloud, and clear what the runtime leaves."""
        if self.proc is not None:
            for project in self.api().projects():
                api = self.api(project.name)
                for inst in api.instances(all=True):
                    with contextlib.suppress(Exception):
                        api.remove_instance(inst.id, force=True)
            self._wait_for_network_removal()
            self.stop()
        network = self._network_leftovers()
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
        assert not network, f"the cloud's dataplane left these behind: {network}"

    def _wait_for_network_removal(self, timeout: float = 10) -> None:
        """The agent deletes a removed instance's links and namespace in the background, and an idle
        bridge a moment later (atoll/agent/net/dataplane.py): give it that moment before stopping."""
        deadline = time.monotonic() + timeout
        netns_dir = self.base / "run" / "netns"
        while time.monotonic() < deadline:
            links = [n for n in os.listdir("/sys/class/net") if n.startswith(self.net_prefix)]
            if not links and not (netns_dir.is_dir() and any(netns_dir.iterdir())):
                table = ["nft", "list", "table", "inet", self.nft_table]
                if subprocess.run(table, capture_output=True).returncode != 0:  # the last thing to go
                    return
            time.sleep(0.05)

    def _network_leftovers(self) -> list[str]:
        """What the dataplane left once every instance was removed (nothing, if it works), removed here
        so that one failure does not cascade into the next tests."""
        left = []
        for name in os.listdir("/sys/class/net"):
            if name.startswith(self.net_prefix):
                left.append(f"link {name}")
                subprocess.run(["ip", "link", "del", name], check=False, capture_output=True)
        for family, table in (
            ("inet", self.nft_table),
            ("arp", self.nft_table),
            ("bridge", self.nft_table),
            ("inet", f"{self.nft_table}_vxlan"),
        ):
            if subprocess.run(["nft", "list", "table", family, table], capture_output=True).returncode == 0:
                left.append(f"nft table {family} {table}")
                subprocess.run(["nft", "delete", "table", family, table], check=False)
        for kind in ("netns", "routers"):
            netns_dir = self.base / "run" / kind
            for path in sorted(netns_dir.iterdir()) if netns_dir.is_dir() else []:
                left.append(f"{kind} {path.name}")
                subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
        return left
