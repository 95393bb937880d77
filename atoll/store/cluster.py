"""SQL models of cluster membership: join tokens, and what each joined host reports.

``hosts`` (in ``models``) stays the list of hosts every mode knows; ``cluster_hosts`` adds what only a
host that joined over the network has: where its agent listens, its certificate, its capacity, its
last heartbeat and whether an operator drained it. A host of ``atoll up`` has no row here.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from atoll.store.models import Base


class JoinTokenRow(Base):
    __tablename__ = "join_tokens"

    secret_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    """sha256 of the token's secret; the secret itself is never stored."""
    created_at: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[float] = mapped_column(Float)
    """Unix time after which the token is refused."""
    used_at: Mapped[str] = mapped_column(String(40), default="")
    """Set, in the transaction that admits a host, when the token is spent: tokens are single-use."""
    used_by: Mapped[str] = mapped_column(String(128), default="")


class ClusterHostRow(Base):
    __tablename__ = "cluster_hosts"

    host_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(255))
    """``host:port`` of the agent's mTLS API."""
    cert_serial: Mapped[str] = mapped_column(String(64))
    joined_at: Mapped[str] = mapped_column(String(40))
    heartbeat_at: Mapped[float] = mapped_column(Float, default=0.0)
    """Unix time of the last heartbeat, as the controller's clock saw it."""
    drained: Mapped[bool] = mapped_column(Boolean, default=False)
    """Set by ``atoll host drain``: no new placements; what runs there keeps running."""
    cpu_millis: Mapped[int] = mapped_column(BigInteger, default=0)
    memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    pids: Mapped[int] = mapped_column(BigInteger, default=0)
    used: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    """Measured use from the last heartbeat (``HostResources`` fields), for display only."""
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
