"""Where the time of `docker run --rm busybox true` and `docker run -d` goes inside Atoll.

A fresh `atoll up` (tests/e2e/cloud.py) runs under bench/phase_timer.py, which times each HTTP request
of the Docker API and each service, agent, runtime and network step. The same `docker` CLI then runs
each command N times; the figure per step is the median over the runs of its total time in one run
(a step called twice in a run counts twice). Steps nest: a parent includes its children.

Run as root: `.venv/bin/python -m bench.docker_phases [--runs 15]`. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.docker_compare import cli_for
from tests.e2e.cloud import Cloud


class TimedCloud(Cloud):
    """A cloud whose `atoll up` is wrapped by bench/phase_timer.py."""

    def start(self) -> None:
        self.tmp.mkdir(exist_ok=True)
        self.extra_env["ATOLL_PHASES_FILE"] = str(self.base / "phases.jsonl")
        log = open(self.base / "atoll-up.log", "ab")  # noqa: SIM115 - the child owns it
        repo = str(Path(__file__).resolve().parents[1])
        before = os.environ.get("PYTHONPATH", "")  # another tree to time, ahead of this one
        env = {**self.env, "PYTHONPATH": f"{before}:{repo}" if before else repo}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.phase_timer", "up"],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.base / "atoll-up.log").read_text()[-3000:])
            try:
                if httpx.get(f"{self.url}/v1/projects/default/images/busybox", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("atoll up did not become ready in 60 s")


def _read(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    with open(path) as f:
        f.seek(offset)
        text = f.read()
    return [json.loads(line) for line in text.splitlines() if line.strip()], offset + len(text.encode())


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it has reaped (the runtime processes it spawned)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def profile(cloud: TimedCloud, argv: list[str], runs: int, settle: float) -> dict[str, Any]:
    docker = cli_for(cloud.docker_host)
    phases = cloud.base / "phases.jsonl"
    for _ in range(3):
        docker(*argv)
    time.sleep(settle)
    offset = phases.stat().st_size if phases.exists() else 0
    totals: dict[str, list[float]] = defaultdict(list)
    walls = []
    assert cloud.proc is not None
    cpu0 = cpu_seconds(cloud.proc.pid)
    for _ in range(runs):
        t0 = time.perf_counter()
        docker(*argv)
        walls.append((time.perf_counter() - t0) * 1000)
        time.sleep(settle)  # what happens after the CLI returns (clean-up) lands in this run too
        records, offset = _read(phases, offset)
        per_run: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        for r in records:
            per_run[r["name"]] += r["ms"]
            counts[r["name"]] += 1
        for name, ms in per_run.items():
            totals[name].append(ms)
            totals[f"#{name}"].append(counts[name])
    table = {
        name: round(statistics.median(v + [0.0] * (runs - len(v))), 2)
        for name, v in totals.items()
        if not name.startswith("#")
    }
    calls = {name[1:]: statistics.median(v) for name, v in totals.items() if name.startswith("#")}
    cpu_ms = (cpu_seconds(cloud.proc.pid) - cpu0) / runs * 1000
    return {
        "wall_ms": round(statistics.median(walls), 1),
        "cpu_ms": round(cpu_ms, 1),
        "steps": table,
        "calls": calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    cloud = TimedCloud(base=Path(tempfile.mkdtemp(prefix="atoll-bench-phases-")))
    out: dict[str, Any] = {"loadavg": Path("/proc/loadavg").read_text().split()[:3]}
    try:
        cloud.start()
        out["run_rm"] = profile(cloud, ["run", "--rm", "busybox", "true"], args.runs, 0.3)
        out["run_d"] = profile(cloud, ["run", "-d", "busybox", "sleep", "1d"], args.runs, 0.3)
        if os.environ.get("ATOLL_PROFILE") and cloud.proc is not None:
            os.kill(cloud.proc.pid, signal.SIGUSR1)
            time.sleep(2)
    finally:
        cloud.teardown()
    for key in ("run_rm", "run_d"):
        print(
            f"\n{key}: CLI wall time median {out[key]['wall_ms']} ms; CPU of `atoll up` and the runtime "
            f"processes it ran: {out[key]['cpu_ms']} ms per command"
        )
        for name, ms in sorted(out[key]["steps"].items(), key=lambda kv: -kv[1]):
            print(f"  {ms:8.2f} ms  x{out[key]['calls'].get(name, 0):g}  {name}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
