"""The threads of a few processes, read from ``/proc``: listed (``threads``), and sampled.

Run as a script, ``python -S -P bench/thread_sampler.py OUT EVERY PID...`` (``bench/pull_probe.py`` runs
it in a session of its own, so it takes nothing from the sampled processes' share of the CPU under
autogroup), it prints ``ready``, then counts the state and ``wchan`` of every thread of the PIDs every
EVERY seconds until SIGTERM, and writes ``{"rounds": N, "counts": {"agent/COMM STATE WCHAN": N, ...}}``
to OUT as JSON; the first PID is the agent's, the others its workers. Standard library only, so the
sampler starts without site-packages and costs little.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
import time
from collections.abc import Iterator


def threads(pids: list[int]) -> Iterator[tuple[int, int]]:
    """(pid, tid) of every thread of ``pids``, a process that is gone passed over."""
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            yield pid, int(tid)


def sample(out: str, every: float, pids: list[int]) -> None:
    """Count the threads' states until SIGTERM, then write the counts to ``out`` (the module's doc)."""
    counts: collections.Counter[str] = collections.Counter()
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("ready", flush=True)
    rounds = 0
    while not stop:
        rounds += 1
        for pid, tid in threads(pids):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    stat = f.read()
                with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                    wchan = f.read() or "-"
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            state = stat[stat.rindex(")") + 2]
            role = "agent" if pid == pids[0] else "worker"
            counts[f"{role}/{comm} {state} {wchan if state in 'SD' else '-'}"] += 1
        time.sleep(every)
    with open(out, "w") as f:
        json.dump({"rounds": rounds, "counts": counts}, f)


if __name__ == "__main__":
    sample(sys.argv[1], float(sys.argv[2]), [int(p) for p in sys.argv[3:]])
