"""SQL models of routers and floating IPs.

A router's legs and a floating IP's address are ordinary ``ports`` rows (with no instance), as in
Neutron: each holds its address in ``ip_allocations``, so an address is never handed out twice, and a
subnet or network with a router on it cannot be deleted from under it. A router interface holds its
subnet's gateway address; the gateway leg and floating IPs take addresses from the external network's
pools.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from atoll.store.models import Base


class RouterRow(Base):
    __tablename__ = "routers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(63), ForeignKey("projects.name", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(128))
    gateway_port_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("ports.id", ondelete="RESTRICT"), nullable=True
    )
    """Its leg on an external network (a port of that network, owned by the router's project)."""
    snat: Mapped[bool] = mapped_column(Boolean, default=True)
    """Masquerade what leaves by the gateway (floating IPs keep their own address either way)."""
    routes: Mapped[list[list[str]]] = mapped_column(JSON)
    """Static routes, ``[[destination cidr, nexthop], ...]``."""
    created_at: Mapped[str] = mapped_column(String(40))
    host_id: Mapped[str | None] = mapped_column(String(128), nullable=True, default=None)
    """The host that realises the router (its network node); None until one is ready. Not a foreign
    key: a removed or silent host is noticed and the router rebound (``services/routerhosts.py``)."""

    __table_args__ = (
        UniqueConstraint("project", "name", name="uq_routers_project_name"),
        Index("ix_routers_host", "host_id"),
    )


class RouterInterfaceRow(Base):
    """A router's leg on a tenant subnet: its port holds the subnet's gateway address."""

    __tablename__ = "router_interfaces"

    port_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True
    )
    router_id: Mapped[str] = mapped_column(String(64), ForeignKey("routers.id", ondelete="CASCADE"))
    subnet_id: Mapped[str] = mapped_column(String(64), ForeignKey("subnets.id", ondelete="RESTRICT"))

    __table_args__ = (
        UniqueConstraint("subnet_id", name="uq_router_interfaces_subnet"),
        Index("ix_router_interfaces_router", "router_id"),
    )


class FloatingIpRow(Base):
    __tablename__ = "floating_ips"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(63), ForeignKey("projects.name", ondelete="RESTRICT"))
    network_id: Mapped[str] = mapped_column(String(64), ForeignKey("networks.id", ondelete="RESTRICT"))
    """The external network it comes from (usually another project's: external networks are shared)."""
    port_id: Mapped[str] = mapped_column(String(64), ForeignKey("ports.id", ondelete="RESTRICT"))
    """Its own port on the external network, which holds the address."""
    address: Mapped[str] = mapped_column(String(64))
    fixed_port_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("ports.id", ondelete="SET NULL"), nullable=True
    )
    """The instance port it is associated with; removing the instance disassociates it."""
    created_at: Mapped[str] = mapped_column(String(40))

    __table_args__ = (Index("ix_floating_ips_fixed_port", "fixed_port_id"),)
