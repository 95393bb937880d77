"""Repo digests (the ``repo@sha256:...`` names an image has in registries it was pulled from or pushed
to), and when an image was last used (for the image GC policy).

Revision ID: 0011_image_digests
Revises: 0003_networks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_image_digests"
down_revision = "0003_networks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_digests",
        sa.Column("project", sa.String(63), primary_key=True),
        sa.Column("repo", sa.String(255), primary_key=True),
        sa.Column("digest", sa.String(71), primary_key=True),
        sa.Column("image_id", sa.String(71), nullable=False),
        sa.ForeignKeyConstraint(["project", "image_id"], ["images.project", "images.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_image_digests_image", "image_digests", ["project", "image_id"])
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("last_used", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("last_used")
    op.drop_index("ix_image_digests_image", "image_digests")
    op.drop_table("image_digests")
