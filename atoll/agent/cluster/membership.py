"""A host's membership, as kept on disk: its certificate and key, the cluster CA, and where things are.

``DATA/cluster/``: ``host.key`` (mode 0600), ``host.crt``, ``ca.crt`` and ``membership.json``
(host id, controller address, the address this agent listens on). Written once by ``atoll join``,
read by every later ``atoll agent``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from atoll.wire.pki import Identity


@dataclass(frozen=True)
class Membership:
    host_id: str
    controller: str
    """``host:port`` of the controller's cluster listener."""
    listen: str
    """``host:port`` this agent's API binds to."""
    advertise: str
    """``host:port`` the controller dials; the listen address unless told otherwise."""
    controllers: list[str] = field(default_factory=list)
    """Every controller's cluster address, as last listed by a controller (``agent/cluster/failover.py``);
    empty until the first heartbeat, and in files written before there could be several."""


def cluster_dir(data_dir: Path) -> Path:
    return data_dir / "cluster"


def identity(data_dir: Path) -> Identity:
    d = cluster_dir(data_dir)
    return Identity(key=d / "host.key", cert=d / "host.crt", ca=d / "ca.crt")


def save(data_dir: Path, membership: Membership) -> None:
    path = cluster_dir(data_dir) / "membership.json"
    path.write_text(json.dumps(asdict(membership), indent=2) + "\n")
    (data_dir / "host-id").write_text(membership.host_id + "\n")


def load(data_dir: Path) -> Membership:
    path = cluster_dir(data_dir) / "membership.json"
    if not path.exists() or not identity(data_dir).exists():
        raise FileNotFoundError(f"{data_dir} holds no cluster membership: run `atoll join TOKEN` first")
    return Membership(**json.loads(path.read_text()))
