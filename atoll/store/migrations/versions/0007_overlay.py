"""Overlay networks: a VNI per overlay network; hosts' underlay addresses and own networks.

Revision ID: 0007_overlay
Revises: 0011_image_digests
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_overlay"
down_revision = "0011_image_digests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "overlay_segments",
        sa.Column(
            "network_id", sa.String(64), sa.ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("vni", sa.Integer, nullable=False, unique=True),
    )
    op.create_table(
        "host_underlays",
        sa.Column("host_id", sa.String(128), sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("mtu", sa.Integer, nullable=False),
    )
    op.create_table(
        "host_cidrs",
        sa.Column("host_id", sa.String(128), sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("interface", sa.String(64), primary_key=True),
        sa.Column("cidr", sa.String(64), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("host_cidrs")
    op.drop_table("host_underlays")
    op.drop_table("overlay_segments")
