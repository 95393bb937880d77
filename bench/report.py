"""The tail of the network benchmarks' output (bench/network.py, bench/netfilter_variants.py): the load
average before and after the run (their figures depend on it), and every figure as one JSON object on the
last line, which is what is read back into docs/benchmarks.md."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def loadavg_text() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextmanager
def reported(results: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``results`` (the run's settings) for the body to add its figures to; printed as the last line
    when the body ends without an error."""
    results["loadavg"] = loadavg_text()
    yield results
    results["loadavg_after"] = loadavg_text()
    print(json.dumps(results))
