"""Security groups, their rules, the groups of each port, and published host ports.

Ports made before this revision get their project's ``default`` group (made here where missing), so
upgrading keeps their traffic flowing as the default group allows.

Revision ID: 0005_secgroups
Revises: 0004_routers
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005_secgroups"
down_revision = "0004_routers"
branch_labels = None
depends_on = None


def _project_fk() -> sa.ForeignKey:
    return sa.ForeignKey("projects.name", ondelete="RESTRICT")


def upgrade() -> None:
    op.create_table(
        "security_groups",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(63), _project_fk(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("project", "name", name="uq_security_groups_project_name"),
    )
    op.create_table(
        "security_group_rules",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(63), _project_fk(), nullable=False),
        sa.Column(
            "group_id",
            sa.String(64),
            sa.ForeignKey("security_groups.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("ethertype", sa.String(8), nullable=False),
        sa.Column("protocol", sa.String(8), nullable=False),
        sa.Column("port_min", sa.Integer, nullable=True),
        sa.Column("port_max", sa.Integer, nullable=True),
        sa.Column("remote_cidr", sa.String(64), nullable=False),
        sa.Column(
            "remote_group_id",
            sa.String(64),
            sa.ForeignKey("security_groups.id", ondelete="RESTRICT"),
            nullable=True,
        ),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_security_group_rules_group", "security_group_rules", ["group_id"])
    op.create_table(
        "port_security_groups",
        sa.Column("port_id", sa.String(64), sa.ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "group_id",
            sa.String(64),
            sa.ForeignKey("security_groups.id", ondelete="RESTRICT"),
            primary_key=True,
        ),
    )
    op.create_index("ix_port_security_groups_group", "port_security_groups", ["group_id"])
    op.create_table(
        "published_ports",
        sa.Column("host_id", sa.String(128), primary_key=True),
        sa.Column("protocol", sa.String(8), primary_key=True),
        sa.Column("host_port", sa.Integer, primary_key=True),
        sa.Column(
            "instance_id",
            sa.String(64),
            sa.ForeignKey("instances.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("host_ip", sa.String(64), nullable=False),
        sa.Column("container_port", sa.Integer, nullable=False),
    )
    op.create_index("ix_published_ports_instance", "published_ports", ["instance_id"])
    _default_groups_for_existing_ports()


def _default_groups_for_existing_ports() -> None:
    conn = op.get_bind()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ports = conn.execute(sa.text("SELECT id, project FROM ports")).fetchall()
    groups: dict[str, str] = {}
    for port_id, project in ports:
        if project not in groups:
            group_id = secrets.token_hex(32)
            groups[project] = group_id
            conn.execute(
                sa.text(
                    "INSERT INTO security_groups (id, project, name, description, created_at) "
                    "VALUES (:id, :project, 'default', 'Default security group', :now)"
                ),
                {"id": group_id, "project": project, "now": now},
            )
            for direction, remote in (("egress", None), ("ingress", group_id)):
                conn.execute(
                    sa.text(
                        "INSERT INTO security_group_rules (id, project, group_id, direction, ethertype, "
                        "protocol, port_min, port_max, remote_cidr, remote_group_id, created_at) VALUES "
                        "(:id, :project, :group, :direction, 'IPv4', 'any', NULL, NULL, :cidr, :remote, :now)"
                    ),
                    {
                        "id": secrets.token_hex(32),
                        "project": project,
                        "group": group_id,
                        "direction": direction,
                        "cidr": "" if remote else "0.0.0.0/0",
                        "remote": remote,
                        "now": now,
                    },
                )
        conn.execute(
            sa.text("INSERT INTO port_security_groups (port_id, group_id) VALUES (:port, :group)"),
            {"port": port_id, "group": groups[project]},
        )


def downgrade() -> None:
    op.drop_table("published_ports")
    op.drop_table("port_security_groups")
    op.drop_table("security_group_rules")
    op.drop_table("security_groups")
