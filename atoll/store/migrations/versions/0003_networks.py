"""Tenant networks: networks, subnets, ports and their IP allocations.

Revision ID: 0003_networks
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_networks"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "networks",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "project", sa.String(63), sa.ForeignKey("projects.name", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("mtu", sa.Integer, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("project", "name", name="uq_networks_project_name"),
    )
    op.create_table(
        "subnets",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "project", sa.String(63), sa.ForeignKey("projects.name", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column(
            "network_id", sa.String(64), sa.ForeignKey("networks.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("cidr", sa.String(64), nullable=False),
        sa.Column("ip_version", sa.Integer, nullable=False),
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("allocation_pools", sa.JSON, nullable=False),
        sa.Column("dns_nameservers", sa.JSON, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_subnets_network", "subnets", ["network_id"])
    op.create_table(
        "ports",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "project", sa.String(63), sa.ForeignKey("projects.name", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column(
            "network_id", sa.String(64), sa.ForeignKey("networks.id", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column(
            "instance_id", sa.String(64), sa.ForeignKey("instances.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("device", sa.String(15), nullable=False),
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("aliases", sa.JSON, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("network_id", "mac", name="uq_ports_network_mac"),
    )
    op.create_index("ix_ports_instance", "ports", ["instance_id"])
    op.create_table(
        "ip_allocations",
        sa.Column(
            "subnet_id",
            sa.String(64),
            sa.ForeignKey("subnets.id", ondelete="RESTRICT"),
            primary_key=True,
        ),
        sa.Column("address", sa.String(64), primary_key=True),
        sa.Column("port_id", sa.String(64), sa.ForeignKey("ports.id", ondelete="CASCADE"), nullable=False),
    )
    op.create_index("ix_ip_allocations_port", "ip_allocations", ["port_id"])


def downgrade() -> None:
    op.drop_table("ip_allocations")
    op.drop_table("ports")
    op.drop_table("subnets")
    op.drop_table("networks")
