"""Where a container's kernel memory goes: Atoll's own bundle run by bare crun (as the agent runs it:
through atoll-launch, in cgroups made beforehand), one part of the configuration taken away at a time.

The figure per variant is the kernel memory charged to the container's memory cgroup once it idles
(`memory.kmem.usage_in_bytes`: its tasks, kernel stacks, page tables, namespaces, mounts and
superblocks, seccomp filter, pipes; and what the runtime allocated while it was inside and left
cached), the median over N containers started one after another. The difference from the full bundle
is what that part costs. Kernel memory charged elsewhere (the cgroup directories themselves, charged to
whoever made them; an agent-made network namespace and its veth) is not in these figures.

Run as root: `.venv/bin/python -m bench.container_kmem [--count 5]`. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.lifecycle import Atoll, BareCrun

Spec = dict[str, Any]


def _drop_mounts(spec: Spec, keep: Callable[[dict[str, Any]], bool]) -> None:
    spec["mounts"] = [m for m in spec["mounts"] if keep(m)]


def no_seccomp(spec: Spec) -> None:
    spec["linux"].pop("seccomp", None)


def no_masks(spec: Spec) -> None:
    spec["linux"]["maskedPaths"] = []
    spec["linux"]["readonlyPaths"] = []


def no_cgroup_mount(spec: Spec) -> None:
    _drop_mounts(spec, lambda m: m.get("type") != "cgroup")


def no_sysfs(spec: Spec) -> None:
    _drop_mounts(spec, lambda m: m.get("type") not in ("sysfs", "cgroup"))
    for key in ("maskedPaths", "readonlyPaths"):
        spec["linux"][key] = [p for p in spec["linux"].get(key, []) if not p.startswith("/sys")]


def no_mqueue_shm(spec: Spec) -> None:
    _drop_mounts(spec, lambda m: m["destination"] not in ("/dev/mqueue", "/dev/shm"))


def host_ipc(spec: Spec) -> None:
    no_mqueue_shm(spec)
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "ipc"]


def no_new_netns(spec: Spec) -> None:
    """The container joins an existing namespace (as Atoll's networked instances join the one the agent
    made) instead of getting its own: the host's here, for the measurement only."""
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
    _drop_mounts(spec, lambda m: m.get("type") not in ("sysfs", "cgroup"))
    no_sysfs(spec)


VARIANTS: dict[str, Callable[[Spec], None]] = {
    "full bundle": lambda spec: None,
    "no seccomp": no_seccomp,
    "no masked/read-only paths": no_masks,
    "no /sys/fs/cgroup mounts": no_cgroup_mount,
    "no /sys": no_sysfs,
    "no /dev/mqueue, /dev/shm": no_mqueue_shm,
    "host ipc (and no mqueue, shm)": host_ipc,
    "no network namespace of its own (and no /sys)": no_new_netns,
}


def kmem_of(parent: str, name: str) -> int:
    return int(Path("/sys/fs/cgroup/memory", parent, name, "memory.kmem.usage_in_bytes").read_text())


def measure(
    base: Path, layers: list[Path], config: Spec, variant: Callable[[Spec], None], count: int
) -> list[int]:
    spec = copy.deepcopy(config)
    variant(spec)
    crun = BareCrun(base, layers, spec, base / "bin")
    try:
        names = [f"k{i}" for i in range(count)]
        for name in names:
            crun.start_detached(name)
        time.sleep(2)  # let the runtime's exit and RCU-freed objects settle
        return [kmem_of(crun.cgroup_parent, name) for name in names]
    finally:
        crun.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    if shutil.which("crun") is None:
        sys.exit("crun is not installed")
    base = Path(tempfile.mkdtemp(prefix="atoll-bench-kmem-"))
    (base / "atoll").mkdir()
    atoll = Atoll(base / "atoll")
    figures: dict[str, Any] = {}
    try:
        layers = atoll.busybox_layers()
        config = atoll.generated_config()
        for i, (label, variant) in enumerate(VARIANTS.items()):
            values = measure(base / f"v{i}", layers, config, variant, args.count)
            figures[label] = round(statistics.median(values) / 1024, 1)
            delta = figures[label] - figures["full bundle"]
            each = [v // 1024 for v in values]
            print(f"{label:48s} {figures[label]:7.1f} KiB ({delta:+.1f})  {each}", flush=True)
    finally:
        atoll.close()
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({"kmem_kib": figures}))


if __name__ == "__main__":
    main()
