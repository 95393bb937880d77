"""SQL models of the controllers sharing one database (``services/controllers.py``)."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from atoll.store.models import Base


class ControllerRow(Base):
    """A controller that serves this database, keyed by the cluster address agents dial."""

    __tablename__ = "controllers"

    address: Mapped[str] = mapped_column(String(255), primary_key=True)
    api_url: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[str] = mapped_column(String(40))
    seen_at: Mapped[float] = mapped_column(Float)
    """Unix time of the controller's last sign of life, renewed every few seconds while it runs."""


class ClusterCaRow(Base):
    """The cluster CA, one row: every controller signs host certificates with it, and agents verify
    every controller against it. Its key is as secret as the registry credentials in the same database."""

    __tablename__ = "cluster_ca"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_pem: Mapped[str] = mapped_column(Text)
    cert_pem: Mapped[str] = mapped_column(Text)
