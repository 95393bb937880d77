"""Instances get a move note: what the last move to another host (evacuation, failover) left behind,
or why a failover left the instance on its down host (docs/cluster.md, "Volumes and bind mounts").

Revision ID: 0023_move_note
Revises: 0014_claims
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_move_note"
down_revision = "0014_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("move_note", sa.String, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("move_note")
