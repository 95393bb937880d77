"""Routers, their interfaces, floating IPs, and the uplink of external networks.

Revision ID: 0004_routers
Revises: 0006_volumes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_routers"
down_revision = "0006_volumes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("networks", sa.Column("uplink", sa.String(15), nullable=False, server_default=""))
    op.create_table(
        "routers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "project", sa.String(63), sa.ForeignKey("projects.name", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column(
            "gateway_port_id", sa.String(64), sa.ForeignKey("ports.id", ondelete="RESTRICT"), nullable=True
        ),
        sa.Column("snat", sa.Boolean, nullable=False),
        sa.Column("routes", sa.JSON, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("project", "name", name="uq_routers_project_name"),
    )
    op.create_table(
        "router_interfaces",
        sa.Column("port_id", sa.String(64), sa.ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "router_id", sa.String(64), sa.ForeignKey("routers.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "subnet_id", sa.String(64), sa.ForeignKey("subnets.id", ondelete="RESTRICT"), nullable=False
        ),
        sa.UniqueConstraint("subnet_id", name="uq_router_interfaces_subnet"),
    )
    op.create_index("ix_router_interfaces_router", "router_interfaces", ["router_id"])
    op.create_table(
        "floating_ips",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "project", sa.String(63), sa.ForeignKey("projects.name", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column(
            "network_id", sa.String(64), sa.ForeignKey("networks.id", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column("port_id", sa.String(64), sa.ForeignKey("ports.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column(
            "fixed_port_id", sa.String(64), sa.ForeignKey("ports.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_floating_ips_fixed_port", "floating_ips", ["fixed_port_id"])


def downgrade() -> None:
    op.drop_table("floating_ips")
    op.drop_table("router_interfaces")
    op.drop_table("routers")
    # A plain ALTER (SQLite 3.35+): batch mode would re-create ``networks``, and dropping the old table
    # would cascade to its subnets.
    op.drop_column("networks", "uplink")
