"""Several controllers on one database: the controllers that serve it (so agents learn every address),
the cluster CA they share, and image sizes as 64-bit integers (PostgreSQL's INTEGER is 32-bit; an
image of 2 GiB or more would not fit).

Revision ID: 0013_controllers
Revises: 0010_cluster
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_controllers"
down_revision = "0016_router_host"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "controllers",
        sa.Column("address", sa.String(255), primary_key=True),
        sa.Column("api_url", sa.String(255), nullable=False),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
    )
    op.create_table(
        "cluster_ca",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key_pem", sa.Text, nullable=False),
        sa.Column("cert_pem", sa.Text, nullable=False),
    )
    # SQLite's INTEGER is 64-bit already; re-creating ``images`` there would cascade-delete its tags.
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("images", "size", type_=sa.BigInteger, existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("images", "size", type_=sa.Integer, existing_nullable=False)
    op.drop_table("cluster_ca")
    op.drop_table("controllers")
