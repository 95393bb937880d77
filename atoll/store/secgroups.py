"""SQL models of security groups and published ports (migration 0005_secgroups).

A group and its rules belong to a project. ``port_security_groups`` says which groups a port is in; it
goes with the port (``CASCADE``) but a group that a port is in cannot be deleted (``RESTRICT``), nor
one that another group's rule names as its remote group. ``published_ports`` reserves a host port for
an instance: the key (host, protocol, host port) makes two instances on one host unable to hold the
same port, whatever two transactions decide at once.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from atoll.store.models import Base


class SecurityGroupRow(Base):
    __tablename__ = "security_groups"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(63), ForeignKey("projects.name", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[str] = mapped_column(String(40))

    __table_args__ = (UniqueConstraint("project", "name", name="uq_security_groups_project_name"),)


class SecurityGroupRuleRow(Base):
    __tablename__ = "security_group_rules"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(63), ForeignKey("projects.name", ondelete="RESTRICT"))
    group_id: Mapped[str] = mapped_column(String(64), ForeignKey("security_groups.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(8))
    """``atoll.model.secgroups.Direction``."""
    ethertype: Mapped[str] = mapped_column(String(8))
    """``IPv4`` (the only one tenant networks carry so far)."""
    protocol: Mapped[str] = mapped_column(String(8))
    """``atoll.model.secgroups.Protocol``."""
    port_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    port_max: Mapped[int | None] = mapped_column(Integer, nullable=True)
    remote_cidr: Mapped[str] = mapped_column(String(64))
    """Normalized CIDR, or "" when the rule names a remote group."""
    remote_group_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("security_groups.id", ondelete="RESTRICT"), nullable=True
    )
    created_at: Mapped[str] = mapped_column(String(40))

    __table_args__ = (Index("ix_security_group_rules_group", "group_id"),)


class PortSecurityGroupRow(Base):
    __tablename__ = "port_security_groups"

    port_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("security_groups.id", ondelete="RESTRICT"), primary_key=True
    )

    __table_args__ = (Index("ix_port_security_groups_group", "group_id"),)


class PublishedPortRow(Base):
    __tablename__ = "published_ports"

    host_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    protocol: Mapped[str] = mapped_column(String(8), primary_key=True)
    host_port: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(64), ForeignKey("instances.id", ondelete="CASCADE"))
    host_ip: Mapped[str] = mapped_column(String(64))
    """"" for every address of the host."""
    container_port: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_published_ports_instance", "instance_id"),)
