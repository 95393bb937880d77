"""Instances get a placement generation: bumped each time the controller moves an instance to another
host (evacuation, failover), so two moves of one instance cannot both commit, and a copy placed by an
older generation is known to be stale (docs/cluster.md, "Moving instances").

Revision ID: 0012_migrate
Revises: 0010_cluster
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_migrate"
down_revision = "0010_cluster"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("generation", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("generation")
