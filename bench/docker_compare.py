"""The Docker CLI against Atoll and against a stock dockerd on this machine, in one run.

Both daemons get the same busybox image (Atoll's starter image; dockerd gets the same root filesystem
through `docker import`) and the same CLI (/usr/local/bin/docker), and containers run with `--network
none` on both (this dockerd is started without its bridge and iptables rules, so it touches nothing of
the host's network). Figures:

(a) the median wall time of `docker run --rm busybox true`;
(b) the rate of `--count` detached starts (`docker run -d busybox sleep 3600`, one after the other);
(c) host memory per idle container: the drop in MemAvailable over those starts, divided by the count.

The dockerd is isolated: its own data root, exec root, pid file, socket, config file and cgroup parent,
and the containerd it spawns lives under them. Run as root: `.venv/bin/python bench/docker_compare.py`.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from atoll.agent.images.starter import busybox_rootfs_tar

ATOLL = str(Path(sys.executable).parent / "atoll")
DOCKER = "/usr/local/bin/docker"
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable")


def wait_socket(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        if path.exists():
            r = subprocess.run([DOCKER, "-H", f"unix://{path}", "version"], capture_output=True)
            if r.returncode == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"no daemon on {path}: {log.read_text()[-3000:]}")


class Daemon:
    name = ""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.socket = base / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def docker(self, *args: str) -> str:
        r = subprocess.run([DOCKER, "-H", f"unix://{self.socket}", *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {r.stderr}")
        return r.stdout

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Atoll(Daemon):
    name = "atoll"

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        env = {
            **os.environ,
            "ATOLL_DATA_DIR": str(base / "data"),
            "ATOLL_RUN_DIR": str(base / "run"),
            "ATOLL_API_PORT": str(free_port()),
            "ATOLL_CGROUP_PARENT": f"atoll-bench-{uuid.uuid4().hex[:6]}",
            "ATOLL_NET_PREFIX": "ab" + uuid.uuid4().hex[:2],
            "ATOLL_NFT_TABLE": f"atoll_bench_{uuid.uuid4().hex[:6]}",
            "ATOLL_DOCKER_SOCKET": str(self.socket),
            "ATOLL_DOCKER_TCP": "",
        }
        log = base / "atoll.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen([ATOLL, "up"], env=env, stdout=out, stderr=out)
        wait_socket(self.socket, self.proc, log)
        deadline = time.monotonic() + 60
        while "busybox" not in self.docker("images") and time.monotonic() < deadline:
            time.sleep(0.1)


class Dockerd(Daemon):
    name = "dockerd"

    def __init__(self, base: Path, rootfs_tar: Path) -> None:
        super().__init__(base)
        config = base / "daemon.json"
        config.write_text("{}")
        self.cgroup_parent = f"atoll-bench-dockerd-{uuid.uuid4().hex[:6]}"
        argv = [
            DOCKERD,
            "--config-file", str(config),
            "--data-root", str(base / "data"),
            "--exec-root", str(base / "exec"),
            "--pidfile", str(base / "dockerd.pid"),
            "-H", f"unix://{self.socket}",
            "--bridge", "none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--cgroup-parent", f"/{self.cgroup_parent}",
            "--storage-driver", "overlay2",
            "--log-level", "warn",
        ]  # fmt: skip
        log = base / "dockerd.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
        wait_socket(self.socket, self.proc, log)
        self.docker("import", "--change", 'CMD ["sh"]', str(rootfs_tar), "busybox:latest")


def run_true(daemon: Daemon, runs: int) -> float:
    daemon.docker("run", "--rm", "--network", "none", "busybox", "true")  # warm up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        daemon.docker("run", "--rm", "--network", "none", "busybox", "true")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def detached(daemon: Daemon, count: int) -> tuple[float, float]:
    """(starts per second, bytes of host memory per idle container)."""
    subprocess.run(["sync"], check=False)
    time.sleep(2)
    before = mem_available()
    t0 = time.perf_counter()
    for _ in range(count):
        daemon.docker("run", "-d", "--network", "none", "busybox", "sleep", "3600")
    rate = count / (time.perf_counter() - t0)
    time.sleep(3)
    per_container = (before - mem_available()) / count
    ids = daemon.docker("ps", "-aq").split()
    if ids:
        daemon.docker("rm", "-f", *ids)
    return rate, per_container


def measure(daemon: Daemon, runs: int, count: int) -> dict[str, float]:
    median = run_true(daemon, runs)
    rate, memory = detached(daemon, count)
    return {"run_rm_true_s": median, "detached_starts_per_s": rate, "memory_per_container_bytes": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="atoll-bench-docker-") as tmp:
        base = Path(tmp)
        rootfs = base / "rootfs.tar"
        busybox_rootfs_tar(rootfs)
        for make in (lambda: Atoll(base / "atoll"), lambda: Dockerd(base / "dockerd", rootfs)):
            daemon: Daemon | None = None
            try:
                daemon = make()
                results[daemon.name] = measure(daemon, args.runs, args.count)
                print(daemon.name, results[daemon.name], flush=True)
            except (OSError, RuntimeError) as e:
                print(f"skipped: {e}", flush=True)
            finally:
                if daemon is not None:
                    daemon.stop()
        for path in Path("/sys/fs/cgroup").glob("*/atoll-bench-*"):
            for child in path.iterdir():
                if child.is_dir():
                    child.rmdir()
            path.rmdir()
    if "atoll" in results and "dockerd" in results:
        a, d = results["atoll"], results["dockerd"]
        results["ratios"] = {
            "run_time_atoll_over_dockerd": a["run_rm_true_s"] / d["run_rm_true_s"],
            "start_rate_atoll_over_dockerd": a["detached_starts_per_s"] / d["detached_starts_per_s"],
            "memory_atoll_over_dockerd": a["memory_per_container_bytes"]
            / max(1.0, d["memory_per_container_bytes"]),
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
