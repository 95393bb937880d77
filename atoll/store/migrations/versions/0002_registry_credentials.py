"""Registry credentials per project (``atoll login``).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_credentials",
        sa.Column(
            "project",
            sa.String(63),
            sa.ForeignKey("projects.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("registry", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("secret", sa.String, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registry_credentials")
