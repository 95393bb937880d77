"""Where a pull's time goes on a busy host: running, waiting for a CPU, or sleeping (and on what).

``python -m bench.pull_probe [--contend N] [--io] [--runs N] [--set field=value ...]``, as root. The
image, registry and contention of ``bench/pull.py``; each run is one Atoll pull into a fresh store,
and for every process of the pull (the agent's process and its layer workers) it reports:

- from ``/proc/PID/task/*/schedstat``: time on a CPU, time runnable but waiting for one (the run
  queue), and the number of times each was switched in (wakeups: each may wait a scheduler slice);
- from a sampler (``bench/thread_sampler.py``: a process in a session of its own, so it takes nothing
  from the pull's share of the CPU under autogroup) reading each thread's state and ``wchan`` every
  few milliseconds: what its sleeping time was spent in (``do_epoll_wait``, ``futex``,
  ``balance_dirty_pages``, ...);
- the time ``ImportJob.commit`` takes (the records: it no longer waits for a ``syncfs``), and when
  the layers were durable (the background sync of ``durable.py``), from the pull's start.

Nothing of this is a product path: it wraps the store's commit to time it, and reads /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from atoll.agent.images import importer
from atoll.agent.images.store import ImageStore
from atoll.agent.registry import layerpool
from atoll.agent.registry.options import RegistryOptions
from atoll.agent.registry.service import Registries
from atoll.model.registry import Pulled
from bench import thread_sampler
from bench.contend import Contention
from bench.pull import build_image
from tests.registry.server import running_registry, upload

SAMPLE_EVERY = 0.004
SAMPLER = [sys.executable, "-S", "-P", thread_sampler.__file__]
"""The sampler's command: no site-packages to load, and not the script's folder on ``sys.path``."""


def task_stats(pids: list[int]) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(pid, tid) -> (ns on CPU, ns waiting on a run queue, times switched in)."""
    out = {}
    for pid, tid in thread_sampler.threads(pids):
        try:
            run, wait, slices = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
        except (OSError, ValueError):
            continue
        out[(pid, tid)] = (int(run), int(wait), int(slices))
    return out


async def probed_pull(
    base: Path, host: str, ref: str, settings: dict[str, Any], perf: str = ""
) -> dict[str, Any]:
    store = ImageStore(base / "store")
    options = dataclasses.replace(RegistryOptions(insecure=frozenset({host})), **settings)
    regs = Registries(store, options)
    commits: list[float] = []
    original = importer.ImportJob.commit

    def timed_commit(self: importer.ImportJob, images: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, images)
        finally:
            commits.append(time.perf_counter() - start)

    importer.ImportJob.commit = timed_commit  # type: ignore[method-assign]
    timeline: list[tuple[str, float, float]] = []  # (what, start, end) relative to the pull's start
    spans = {"layer": (layerpool.LayerWorkers, "run"), "install": (importer.ImportJob, "install")}
    saved = {name: getattr(cls, attr) for name, (cls, attr) in spans.items()}

    def spanning(name: str) -> Any:
        inner = saved[name]

        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                timeline.append((name, t0 - start, time.perf_counter() - start))

        return wrapper

    for name, (cls, attr) in spans.items():
        setattr(cls, attr, spanning(name))
    start = time.perf_counter()
    samples = base / "samples.json"
    try:
        await regs.ready()
        os.sync()
        pids = [os.getpid(), *regs.pull_worker_pids()]
        before = task_stats(pids)
        sampler = subprocess.Popen(
            [*SAMPLER, str(samples), str(SAMPLE_EVERY), *map(str, pids)],
            start_new_session=True,
            stdout=subprocess.PIPE,
        )
        assert sampler.stdout is not None
        sampler.stdout.readline()  # it is up and counting
        recorder = None
        if perf:  # CPU profile of the pull's processes (cpu-clock: the VM has no PMU)
            recorder = subprocess.Popen(
                [
                    "perf",
                    "record",
                    "-q",
                    "-e",
                    "cpu-clock",
                    "-F",
                    "2000",
                    "-g",
                    "-o",
                    perf,
                    "-p",
                    ",".join(map(str, pids)),
                ],
                start_new_session=True,
            )
            time.sleep(1)
        start = time.perf_counter()
        async for event in regs.pull(ref, {}):
            if isinstance(event, Pulled):
                wall = time.perf_counter() - start
                layers = event.record.layers
        after = task_stats(pids)
        sampler.terminate()
        sampler.wait()
        if recorder is not None:
            recorder.send_signal(2)
            recorder.wait()
        await store.wait_durable(layers)
        durable = time.perf_counter() - start
    finally:
        importer.ImportJob.commit = original  # type: ignore[method-assign]
        for name, (cls, attr) in spans.items():
            setattr(cls, attr, saved[name])
        await regs.close()
        shutil.rmtree(base / "store")
    per: dict[str, list[float]] = {"agent": [0, 0, 0], "workers": [0, 0, 0]}
    for key, (run, wait, slices) in after.items():
        run0, wait0, slices0 = before.get(key, (0, 0, 0))
        role = "agent" if key[0] == pids[0] else "workers"
        per[role][0] += (run - run0) / 1e9
        per[role][1] += (wait - wait0) / 1e9
        per[role][2] += slices - slices0
    sampled = json.loads(samples.read_text())
    samples.unlink()
    return {
        "wall": wall,
        "commit": sum(commits),
        "durable": durable,
        "sched": per,
        "samples": sampled,
        "timeline": timeline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pull_probe")
    parser.add_argument("--contend", type=int, default=0)
    parser.add_argument("--procs", type=int, default=0)
    parser.add_argument("--io", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--perf", default="", help="perf record the pull's processes into this file")
    parser.add_argument("--set", action="append", default=[], help="RegistryOptions field=int")
    args = parser.parse_args()
    settings = {k: int(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    base = Path(tempfile.mkdtemp(prefix="bench-probe-"))
    try:
        image = build_image()
        with running_registry(base / "registry") as reg:
            upload(reg, "bench/big", "1", image)
            ref = f"{reg.host}/bench/big:1"
            with Contention(args.contend, procs=args.procs, io=args.io, scratch=base):
                for _ in range(args.runs):
                    found = asyncio.run(probed_pull(base, reg.host, ref, settings, args.perf))
                    report(found)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def report(found: dict[str, Any]) -> None:
    print(
        f"pull {found['wall']:.2f} s, commit (records) {found['commit']:.3f} s, "
        f"durable after {found['durable']:.2f} s, load {os.getloadavg()[0]:.1f}"
    )
    for role, (run, wait, slices) in found["sched"].items():
        print(f"  {role}: on CPU {run:.2f} s, waiting for a CPU {wait:.2f} s, switched in {slices:.0f} times")
    spans = sorted(found["timeline"], key=lambda x: x[1])
    print("  timeline: " + ", ".join(f"{n} {a:.2f}-{b:.2f}" for n, a, b in spans))
    rounds = found["samples"]["rounds"]
    counts = found["samples"]["counts"]
    print(f"  thread states over {rounds} samples (share of the pull's duration, per thread):")
    for key, n in sorted(counts.items(), key=lambda kv: -kv[1])[:25]:
        print(f"    {n / rounds:6.2f}  {key}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
