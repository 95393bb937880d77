"""SQL models of volumes and of which instances use them.

A volume is pure desired state until an instance uses it: its host makes the directory then. The link
table ``instance_volumes`` is what "in use" means: its rows go with their instance (``CASCADE``), and
a volume with a row cannot be deleted (``RESTRICT``), whatever a service forgets to check.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from atoll.store.models import Base


class VolumeRow(Base):
    __tablename__ = "volumes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(63), ForeignKey("projects.name", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(255))
    """Unique in its project; an anonymous volume is named by its id, as in Docker."""
    driver: Mapped[str] = mapped_column(String(32))
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    options: Mapped[dict[str, str]] = mapped_column(JSON)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    """Made for an image's VOLUME (or a mount without a source): removed with its instance on request."""
    created_at: Mapped[str] = mapped_column(String(40))

    __table_args__ = (UniqueConstraint("project", "name", name="uq_volumes_project_name"),)


class InstanceVolumeRow(Base):
    __tablename__ = "instance_volumes"

    instance_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True
    )
    volume_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("volumes.id", ondelete="RESTRICT"), primary_key=True
    )

    __table_args__ = (Index("ix_instance_volumes_volume", "volume_id"),)
