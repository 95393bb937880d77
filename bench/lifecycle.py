"""Lifecycle benchmark: Atoll's REST API against a bare `runc run` of the same image, in one run.

(a) median latency of create + start + wait-for-exit of `true` through the REST API, vs. `runc run`
    (which also creates, starts, waits and deletes) of a bundle over the same image layers;
(b) the rate of 100 detached starts (`sleep`) through the API, vs. 100 `runc run -d`;
(c) host memory per idle container beyond the containers' own processes:
    (MemAvailable drop - the containers' own memory) / N. The containers' own memory is reported both
    as PSS (shared pages split among sharers; the honest figure) and as RSS (what the issue names;
    it counts the shared busybox pages once per container, so it flatters the result).

Run as root: `make bench` or `.venv/bin/python bench/lifecycle.py [--runs 30] [--count 100]`.
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

import httpx

from atoll.agent.runtime.cgroups import cgroup_version, remove_cgroup
from atoll.agent.runtime.initbin import ensure_launcher
from atoll.agent.runtime.owncgroups import OwnCgroups

ATOLL = str(Path(sys.executable).parent / "atoll")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable")


def process_memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in bytes."""
    pss = rss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
            elif line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return pss, rss


def cgroup_pids(parent: str) -> list[int]:
    pids: list[int] = []
    for root in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")):
        base = root / parent
        if base.is_dir():
            for procs in base.glob("*/cgroup.procs"):
                pids += [int(p) for p in procs.read_text().split()]
            return pids
    return pids


def settle() -> None:
    subprocess.run(["sync"], check=False)
    time.sleep(2)


class Atoll:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.cgroup_parent = f"atoll-bench-{uuid.uuid4().hex[:6]}"
        env = {
            **os.environ,
            "ATOLL_DATA_DIR": str(base / "data"),
            "ATOLL_RUN_DIR": str(base / "run"),
            "ATOLL_API_PORT": str(self.port),
            "ATOLL_CGROUP_PARENT": self.cgroup_parent,
            "ATOLL_DOCKER_SOCKET": "",  # no Docker listener: the real cloud's socket and port stay free
            "ATOLL_DOCKER_TCP": "",
        }
        self.log = open(base / "atoll.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([ATOLL, "up"], env=env, stdout=self.log, stderr=self.log)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}/v1/projects/default", timeout=120)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.http.get("/images/busybox").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError((base / "atoll.log").read_text()[-2000:])
            time.sleep(0.05)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text}")
        return r.json() if r.content else None

    def run_true(self) -> float:
        t0 = time.perf_counter()
        inst = self.call("POST", "/instances", json={"image": "busybox", "command": ["true"]})
        self.call("POST", f"/instances/{inst['id']}/start")
        result = self.call("POST", f"/instances/{inst['id']}/wait")
        elapsed = time.perf_counter() - t0
        assert result["exit_code"] == 0, result
        self.call("DELETE", f"/instances/{inst['id']}")
        return elapsed

    def generated_config(self) -> dict[str, Any]:
        """The OCI config Atoll writes for a `true` instance (kept until the instance is removed)."""
        inst = self.call("POST", "/instances", json={"image": "busybox", "command": ["true"]})
        self.call("POST", f"/instances/{inst['id']}/start")
        self.call("POST", f"/instances/{inst['id']}/wait")
        config = json.loads((self.base / "data" / "instances" / inst["id"] / "config.json").read_text())
        self.call("DELETE", f"/instances/{inst['id']}")
        return dict(config)

    def start_detached(self) -> str:
        inst = self.call("POST", "/instances", json={"image": "busybox", "command": ["sleep", "3600"]})
        self.call("POST", f"/instances/{inst['id']}/start")
        return str(inst["id"])

    def busybox_layers(self) -> list[Path]:
        image = self.call("GET", "/images/busybox")
        return [
            self.base / "data" / "images" / "layers" / d.split(":", 1)[1] / "diff" for d in image["layers"]
        ]

    def close(self) -> None:
        for inst in self.call("GET", "/instances", params={"all": "true"}):
            self.call("DELETE", f"/instances/{inst['id']}", params={"force": "true"})
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()
        remove_cgroup_parent(self.cgroup_parent)


class BareRunc:
    """Bare `runc` over an overlay of the same image layers.

    With ``config`` (the config.json Atoll generated for an instance) it runs the same bundle Atoll
    runs, atoll-init included, with the log and exit files on fds 3 and 4 as Atoll passes them; without
    it, runc's default spec with the command as process 1.
    """

    def __init__(self, base: Path, layers: list[Path], config: dict[str, Any] | None = None) -> None:
        self.base = base
        self.root = base / "runc-root"
        self.bundle = base / "bundle"
        self.cgroup_parent = f"atoll-bench-bare-{uuid.uuid4().hex[:6]}"
        upper, work, rootfs = base / "upper", base / "work", self.bundle / "rootfs"
        for d in (upper, work, rootfs, self.root):
            d.mkdir(parents=True)
        if config is None:
            subprocess.run(["runc", "spec", "--bundle", str(self.bundle)], check=True)
            spec = json.loads((self.bundle / "config.json").read_text())
            spec["process"]["terminal"] = False
            self.prefix: list[str] = []
        else:
            spec = json.loads(json.dumps(config))
            for mount in spec["mounts"]:  # the instance's /etc files went with it: make our own
                if mount["destination"].startswith("/etc/"):
                    own = base / Path(mount["destination"]).name
                    own.write_text("127.0.0.1\tlocalhost\n" if own.name == "hosts" else "bench\n")
                    mount["source"] = str(own)
            self.prefix = spec["process"]["args"][: spec["process"]["args"].index("--") + 1]
        spec["root"]["path"] = str(rootfs)
        self.spec = spec
        self.n = 0
        lower = ":".join(str(p) for p in reversed(layers))
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, rootfs], check=True)

    def _run(self, name: str, args: list[str], *flags: str) -> None:
        spec = json.loads(json.dumps(self.spec))
        spec["process"]["args"] = self.prefix + args
        spec["linux"]["cgroupsPath"] = f"/{self.cgroup_parent}/{name}"
        (self.bundle / "config.json").write_text(json.dumps(spec))
        log = os.open(self.base / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        status = os.open(self.base / "exit", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        argv = self._argv(name, *flags)
        pid = os.posix_spawnp(
            argv[0],
            argv,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, log, 3),
                (os.POSIX_SPAWN_DUP2, status, 4),
            ],
        )
        os.close(log)
        os.close(status)
        _, code = os.waitpid(pid, 0)
        if code != 0:
            raise RuntimeError(f"runc run {name}: status {code}")

    def _argv(self, name: str, *flags: str) -> list[str]:
        argv = ["runc", "--root", str(self.root), "run", *flags, "--bundle", str(self.bundle), name]
        if self.prefix:
            argv[4:4] = ["--preserve-fds", "2"]
        return argv

    def run_true(self) -> float:
        self.n += 1
        t0 = time.perf_counter()
        self._run(f"bench-{self.n}", ["true"])
        return time.perf_counter() - t0

    def start_detached(self, name: str) -> None:
        self._run(name, ["sleep", "3600"], "--detach")

    def pids(self) -> list[int]:
        return cgroup_pids(self.cgroup_parent)

    def close(self) -> None:
        out = subprocess.run(["runc", "--root", str(self.root), "list", "-q"], capture_output=True, text=True)
        for cid in out.stdout.split():
            subprocess.run(["runc", "--root", str(self.root), "delete", "-f", cid], check=False)
        subprocess.run(["umount", str(self.bundle / "rootfs")], check=False)
        remove_cgroup_parent(self.cgroup_parent)


class BareCrun(BareRunc):
    """Bare `crun run` of the same bundle, as the agent runs it on this host: on cgroup v1 with its
    cgroup manager disabled, through atoll-launch, in cgroups made and limited beforehand (the cgroup
    set-up, ~1 ms of Python, is timed too)."""

    def __init__(self, base: Path, layers: list[Path], config: dict[str, Any], bin_dir: Path) -> None:
        super().__init__(base, layers, config)
        self.launcher = ensure_launcher(bin_dir) if cgroup_version() == 1 else None

    def _argv(self, name: str, *flags: str) -> list[str]:
        crun = ["crun", *(["--cgroup-manager=disabled"] if self.launcher else []), "--root", str(self.root)]
        run = [*crun, "run", "--preserve-fds", "2", *flags, "--bundle", str(self.bundle), name]
        if self.launcher is None:
            return run
        cgroup = OwnCgroups(f"/{self.cgroup_parent}/{name}")
        cgroup.create(self.spec["linux"].get("resources") or {})
        joins = [a for pair in cgroup.join_pairs() for a in ("-c", pair)]
        return [str(self.launcher), "-m", *joins, "--", shutil.which("crun") or "crun", *run[1:]]

    def run_true(self) -> float:
        took = super().run_true()
        remove_cgroup(f"/{self.cgroup_parent}/bench-{self.n}")  # what crun's delete would do
        return took

    def close(self) -> None:
        out = subprocess.run([*self._list_argv(), "list", "-q"], capture_output=True, text=True)
        for cid in out.stdout.split():
            subprocess.run([*self._list_argv(), "delete", "-f", cid], check=False)
        subprocess.run(["umount", str(self.bundle / "rootfs")], check=False)
        remove_cgroup_parent(self.cgroup_parent)

    def _list_argv(self) -> list[str]:
        return ["crun", *(["--cgroup-manager=disabled"] if self.launcher else []), "--root", str(self.root)]


def remove_cgroup_parent(parent: str) -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        path = hierarchy / parent
        if path.is_dir():
            for child in path.iterdir():
                if child.is_dir():
                    child.rmdir()
            path.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")

    has_crun = shutil.which("crun") is not None
    base = Path(tempfile.mkdtemp(prefix="atoll-bench-"))
    (base / "atoll").mkdir()
    atoll = Atoll(base / "atoll")
    bare: BareRunc | None = None
    figures: dict[str, Any] = {}
    try:
        layers = atoll.busybox_layers()
        bare = BareRunc(base / "bare", layers, atoll.generated_config())
        plain = BareRunc(base / "plain", layers)
        crun = BareCrun(base / "crun", layers, atoll.generated_config(), base / "bin") if has_crun else None
        try:
            for _ in range(3):  # warm every path
                atoll.run_true()
                bare.run_true()
                plain.run_true()
                if crun is not None:
                    crun.run_true()
            atoll_times, runc_times, plain_times, crun_times = [], [], [], []
            for _ in range(args.runs):  # taking turns, so that a change of load hits each the same
                atoll_times.append(atoll.run_true())
                runc_times.append(bare.run_true())
                plain_times.append(plain.run_true())
                if crun is not None:
                    crun_times.append(crun.run_true())
        finally:
            plain.close()
            if crun is not None:
                crun.close()
        if crun_times:
            a_crun = statistics.median(crun_times)
            figures["a_crun_run_same_bundle_ms"] = round(a_crun * 1000, 2)
            print(
                f"(a') `crun run` of the same bundle {a_crun * 1000:.1f} ms, "
                f"{statistics.median(runc_times) / a_crun:.2f}x faster than `runc run`"
            )
        a_atoll, a_runc = statistics.median(atoll_times), statistics.median(runc_times)
        a_plain = statistics.median(plain_times)
        figures["a_atoll_create_start_wait_ms"] = round(a_atoll * 1000, 2)
        figures["a_runc_run_same_bundle_ms"] = round(a_runc * 1000, 2)
        figures["a_ratio"] = round(a_atoll / a_runc, 2)
        figures["a_runc_run_default_spec_ms"] = round(a_plain * 1000, 2)
        figures["a_ratio_vs_default_spec"] = round(a_atoll / a_plain, 2)
        print(
            f"(a) create+start+wait `true`: atoll {a_atoll * 1000:.1f} ms; `runc run` of the same bundle "
            f"{a_runc * 1000:.1f} ms, ratio {a_atoll / a_runc:.2f}x (target <= 2.5x); "
            f"`runc run` of runc's default spec {a_plain * 1000:.1f} ms, ratio {a_atoll / a_plain:.2f}x"
        )

        settle()
        before = mem_available()
        t0 = time.perf_counter()
        for _ in range(args.count):
            atoll.start_detached()
        b_atoll = args.count / (time.perf_counter() - t0)
        settle()
        drop = before - mem_available()
        own = [process_memory(p) for p in cgroup_pids(atoll.cgroup_parent)]
        own_pss, own_rss = sum(m[0] for m in own), sum(m[1] for m in own)
        c_pss = (drop - own_pss) / args.count
        c_rss = (drop - own_rss) / args.count
        figures["b_atoll_starts_per_s"] = round(b_atoll, 1)
        figures["c_mem_available_drop_per_container_mb"] = round(drop / args.count / 2**20, 3)
        figures["c_overhead_per_container_mb_pss"] = round(c_pss / 2**20, 3)
        figures["c_overhead_per_container_mb_rss"] = round(c_rss / 2**20, 3)
        figures["c_container_own_pss_mb"] = round(own_pss / args.count / 2**20, 3)
        figures["c_container_processes"] = len(own)

        settle()
        before = mem_available()
        t0 = time.perf_counter()
        for i in range(args.count):
            bare.start_detached(f"idle-{i}")
        b_runc = args.count / (time.perf_counter() - t0)
        settle()
        bare_drop = before - mem_available()
        bare_pss = sum(process_memory(p)[0] for p in bare.pids())
        c_bare = (bare_drop - bare_pss) / args.count
        figures["c_runc_overhead_per_container_mb_pss"] = round(c_bare / 2**20, 3)
        figures["b_runc_run_d_per_s"] = round(b_runc, 1)
        figures["b_ratio"] = round(b_atoll / b_runc, 2)
        print(f"(b) {args.count} detached starts: atoll {b_atoll:.1f}/s, runc run -d {b_runc:.1f}/s")
        print(
            f"(c) per idle container: MemAvailable drop {drop / args.count / 2**20:.3f} MB; beyond the "
            f"container's own processes {c_pss / 2**20:.3f} MB (PSS), {c_rss / 2**20:.3f} MB (RSS)"
            " (target <= 0.5 MB)"
        )
    finally:
        atoll.close()
        if bare is not None:
            bare.close()
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
