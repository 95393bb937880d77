"""Volumes, and which instances use them.

Revision ID: 0006_volumes
Revises: 0007_overlay
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_volumes"
down_revision = "0007_overlay"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "project", sa.String(63), sa.ForeignKey("projects.name", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("driver", sa.String(32), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("anonymous", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("project", "name", name="uq_volumes_project_name"),
    )
    op.create_table(
        "instance_volumes",
        sa.Column(
            "instance_id",
            sa.String(64),
            sa.ForeignKey("instances.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "volume_id", sa.String(64), sa.ForeignKey("volumes.id", ondelete="RESTRICT"), primary_key=True
        ),
    )
    op.create_index("ix_instance_volumes_volume", "instance_volumes", ["volume_id"])


def downgrade() -> None:
    op.drop_table("instance_volumes")
    op.drop_table("volumes")
