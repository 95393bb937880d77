"""Paused instances (``docker pause``): the cgroup freezer holds every process of a running instance.

Revision ID: 0008_paused
Revises: 0005_secgroups
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_paused"
down_revision = "0005_secgroups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("paused")
