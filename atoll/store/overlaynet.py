"""Tables of overlay networks and of the hosts' own networks.

They live apart from ``models`` so that the overlay feature adds tables instead of columns to shared
ones: a network's VNI is a row of ``overlay_segments`` (removed with the network), a host's underlay
address a row of ``host_underlays``, and the networks a host is on (reported by its agent, replaced
whole on every report) rows of ``host_cidrs``.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from atoll.store.models import Base


class OverlaySegmentRow(Base):
    """The VXLAN segment of an overlay network. The unique VNI is what keeps two networks apart on the
    wire, so the database, not the allocator, has the last word on it."""

    __tablename__ = "overlay_segments"

    network_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True
    )
    vni: Mapped[int] = mapped_column(Integer, unique=True)


class HostUnderlayRow(Base):
    """Where a host's VXLAN packets come from and go to, as its agent last reported."""

    __tablename__ = "host_underlays"

    host_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(64))
    """"" when the host has no usable address (it then gets no overlay peers)."""
    mtu: Mapped[int] = mapped_column(Integer)


class HostCidrRow(Base):
    """A network a host itself is on (an address's prefix or a route's destination), on ``interface``."""

    __tablename__ = "host_cidrs"

    host_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    interface: Mapped[str] = mapped_column(String(64), primary_key=True)
    cidr: Mapped[str] = mapped_column(String(64), primary_key=True)
