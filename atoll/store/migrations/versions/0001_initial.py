"""Initial schema: projects, hosts, the image catalog and instances.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "hosts",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("cgroup_version", sa.Integer, nullable=False),
        sa.Column("last_seen", sa.String(40), nullable=False),
    )
    op.create_table(
        "images",
        sa.Column(
            "project",
            sa.String(63),
            sa.ForeignKey("projects.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("id", sa.String(71), primary_key=True),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("architecture", sa.String(32), nullable=False),
        sa.Column("os", sa.String(32), nullable=False),
        sa.Column("layers", sa.JSON, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_images_id", "images", ["id"])
    op.create_table(
        "image_tags",
        sa.Column("project", sa.String(63), primary_key=True),
        sa.Column("repo", sa.String(255), primary_key=True),
        sa.Column("tag", sa.String(128), primary_key=True),
        sa.Column("image_id", sa.String(71), nullable=False),
        sa.ForeignKeyConstraint(["project", "image_id"], ["images.project", "images.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_image_tags_image", "image_tags", ["project", "image_id"])
    op.create_table(
        "image_hosts",
        sa.Column("image_id", sa.String(71), primary_key=True),
        sa.Column("host_id", sa.String(128), sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "project",
            sa.String(63),
            sa.ForeignKey("projects.name", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column("image_id", sa.String(71), nullable=False),
        sa.Column("host_id", sa.String(128), sa.ForeignKey("hosts.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("desired_state", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("finished_at", sa.String(40), nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("oom_killed", sa.Boolean, nullable=False),
        sa.Column("error", sa.String, nullable=False),
        sa.Column("restart_count", sa.Integer, nullable=False),
        sa.Column("restart_streak", sa.Integer, nullable=False),
        sa.Column("restart_policy", sa.String(16), nullable=False),
        sa.Column("restart_max_retries", sa.Integer, nullable=False),
        sa.Column("auto_remove", sa.Boolean, nullable=False),
        sa.Column("user_stopped", sa.Boolean, nullable=False),
        sa.Column("restart_at", sa.Float, nullable=True),
        sa.UniqueConstraint("project", "name", name="uq_instances_project_name"),
    )
    op.create_index("ix_instances_host", "instances", ["host_id"])
    op.create_index("ix_instances_image", "instances", ["image_id"])


def downgrade() -> None:
    op.drop_table("instances")
    op.drop_table("image_hosts")
    op.drop_table("image_tags")
    op.drop_table("images")
    op.drop_table("hosts")
    op.drop_table("projects")
