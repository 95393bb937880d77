"""What each instance claims on its host, as plain integer columns of ``instances``.

Placement sums the claims per host on every create. Read from the ``spec`` JSON, that meant loading and
parsing every instance's whole spec each time: O(instances) of Python per create, which made 50,000
creates quadratic. The three ``claim_*`` columns hold the same numbers, so the sums are one
``GROUP BY host_id`` in the database. They are derived from ``spec`` by ORM hooks on every insert and
update, so whatever path writes a spec (create, ``docker update``) keeps them in step; migration
``0014_claims`` fills them for existing rows with the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import event

from atoll.store.models import InstanceRow


def claim_vector(resources: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(cpu millis, memory bytes, disk bytes, pids) an instance reserves, from its spec's resources:
    the CFS quota over its period, the memory limit, the pids limit; absent or unlimited counts as 0."""
    quota, period = resources.get("cpu_quota_us"), resources.get("cpu_period_us")
    cpu = (
        int(quota) * 1000 // int(period)
        if isinstance(quota, int) and isinstance(period, int) and period
        else 0
    )
    memory = resources.get("memory_bytes")
    pids = resources.get("pids_limit")
    return (
        cpu,
        memory if isinstance(memory, int) and memory > 0 else 0,
        0,
        pids if isinstance(pids, int) and pids > 0 else 0,
    )


def _derive(_mapper: Any, _connection: Any, row: InstanceRow) -> None:
    cpu, memory, _disk, pids = claim_vector((row.spec or {}).get("resources") or {})
    row.claim_cpu_millis, row.claim_memory_bytes, row.claim_pids = cpu, memory, pids


event.listen(InstanceRow, "before_insert", _derive)
event.listen(InstanceRow, "before_update", _derive)
