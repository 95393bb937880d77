"""What each instance claims on its host (cpu millis, memory bytes, pids) as columns, so placement sums
them in SQL instead of parsing every spec on every create (see ``store/claims.py``).

Revision ID: 0014_claims
Revises: 0010_cluster
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014_claims"
down_revision = "0013_controllers"
branch_labels = None
depends_on = None

COLUMNS = ("claim_cpu_millis", "claim_memory_bytes", "claim_pids")


def _vector(resources: dict[str, Any]) -> tuple[int, int, int]:
    # The rule of atoll.store.claims.claim_vector, repeated: a migration must not change with the code.
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
        pids if isinstance(pids, int) and pids > 0 else 0,
    )


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))
    conn = op.get_bind()
    instances = sa.table(
        "instances",
        sa.column("id", sa.String),
        sa.column("spec", sa.JSON),
        *(sa.column(c, sa.BigInteger) for c in COLUMNS),
    )
    for instance_id, spec in conn.execute(sa.select(instances.c.id, instances.c.spec)).all():
        if isinstance(spec, str):
            spec = json.loads(spec)
        cpu, memory, pids = _vector((spec or {}).get("resources") or {})
        conn.execute(
            instances.update()
            .where(instances.c.id == instance_id)
            .values(claim_cpu_millis=cpu, claim_memory_bytes=memory, claim_pids=pids)
        )


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
