"""Helpers of the dataplane's kernel tests: the test's host namespace, traffic probes, and specs."""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from atoll.model.instance import InstanceSpec, ProcessSpec
from atoll.model.network import PortSpec


@dataclass
class Host:
    name: str

    @property
    def path(self) -> Path:
        return Path("/run/netns") / self.name

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *args], capture_output=True, text=True, check=check
        )

    def links(self) -> set[str]:
        return set(self.run("ls", "/sys/class/net").stdout.split()) - {"lo"}

    def nft_tables(self) -> set[str]:
        return {
            line.strip() for line in self.run("nft", "list", "tables").stdout.splitlines() if line.strip()
        }


def in_netns(path: Path, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={path}", *args], capture_output=True, text=True, timeout=timeout
    )


def ping(path: Path, address: str) -> bool:
    """One echo from the namespace at ``path`` to ``address``, answered within 2 s."""
    return in_netns(path, "busybox", "ping", "-c", "1", "-W", "2", address).returncode == 0


def new_id() -> str:
    return secrets.token_hex(32)


def instance(*ports: PortSpec, instance_id: str | None = None) -> InstanceSpec:
    return InstanceSpec(
        id=instance_id or new_id(),
        name="t",
        project="p",
        image_id="",
        layers=[],
        process=ProcessSpec(args=["sh"]),
        ports=list(ports),
    )


def port(
    network_id: str, ip: str, *, prefix_len: int = 24, gateway: str = "", device: str = "eth0"
) -> PortSpec:
    mac = "02:a7:" + ":".join(secrets.token_hex(1) for _ in range(4))
    return PortSpec(
        id=new_id(),
        network_id=network_id,
        mac=mac,
        ip=ip,
        prefix_len=prefix_len,
        gateway=gateway,
        device=device,
    )


class Server:
    """``busybox httpd`` (TCP) serving one page, inside the namespace at ``path``; stop() kills it."""

    def __init__(self, path: Path, port: int, www: Path) -> None:
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text("hello\n")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={path}", "busybox", "httpd", "-f", "-p", str(port), "-h", str(www)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # listening once ss shows it
            listing = in_netns(path, "ss", "-Hltn", f"sport = :{port}").stdout
            if listing.strip():
                return
            time.sleep(0.02)
        self.stop()
        raise AssertionError(f"httpd on port {port} did not start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def fetch(path: Path, url: str, *, source: str | None = None) -> bool:
    """An HTTP answer from ``url``, asked from the namespace at ``path`` within 2 s (curl)."""
    args = ["curl", "-s", "-o", "/dev/null", "-m", "2", url]
    if source:
        args += ["--interface", source]
    return in_netns(path, *args).returncode == 0
