"""Cluster membership: join tokens and what joined hosts report.

Revision ID: 0010_cluster
Revises: 0008_paused
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_cluster"
down_revision = "0008_paused"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "join_tokens",
        sa.Column("secret_hash", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.String(40), nullable=False),
        sa.Column("used_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "cluster_hosts",
        sa.Column("host_id", sa.String(128), sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("cert_serial", sa.String(64), nullable=False),
        sa.Column("joined_at", sa.String(40), nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
        sa.Column("drained", sa.Boolean, nullable=False),
        sa.Column("cpu_millis", sa.BigInteger, nullable=False),
        sa.Column("memory_bytes", sa.BigInteger, nullable=False),
        sa.Column("disk_bytes", sa.BigInteger, nullable=False),
        sa.Column("pids", sa.BigInteger, nullable=False),
        sa.Column("used", sa.JSON, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cluster_hosts")
    op.drop_table("join_tokens")
