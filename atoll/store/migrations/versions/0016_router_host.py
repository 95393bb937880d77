"""Routers are bound to one host (a network node) in a cluster.

Revision ID: 0016_router_host
Revises: 0010_cluster
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_router_host"
down_revision = "0012_migrate"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("routers", sa.Column("host_id", sa.String(128), nullable=True))
    op.create_index("ix_routers_host", "routers", ["host_id"])


def downgrade() -> None:
    op.drop_index("ix_routers_host", table_name="routers")
    with op.batch_alter_table("routers") as batch:
        batch.drop_column("host_id")
