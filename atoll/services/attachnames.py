"""Names of networks and volumes by id, for the activity entries of every run (``attachactivity``).

A network's name and driver and a volume's name and driver never change after creation, and ids are
never reused, so each is read from the database once: the start and the exit of every container would
otherwise load a row per network and per volume in the transaction that records them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from atoll.store.models import NetworkRow
from atoll.store.volumes import VolumeRow

LIMIT = 4096
"""Entries kept; past it the cache starts over (the ids of removed networks and volumes stay until then)."""


@dataclass
class AttachNames:
    networks: dict[str, tuple[str, str]] = field(default_factory=dict)
    """network id -> (name, type)."""
    volumes: dict[str, tuple[str, str]] = field(default_factory=dict)
    """volume id -> (name, driver)."""

    def network(self, s: Session, network_id: str) -> tuple[str, str] | None:
        known = self.networks.get(network_id)
        if known is None:
            row = s.get(NetworkRow, network_id)
            if row is None:
                return None
            known = self._keep(self.networks, network_id, (row.name, row.type))
        return known

    def volume(self, s: Session, volume_id: str) -> tuple[str, str] | None:
        known = self.volumes.get(volume_id)
        if known is None:
            row = s.get(VolumeRow, volume_id)
            if row is None:
                return None
            known = self._keep(self.volumes, volume_id, (row.name, row.driver))
        return known

    @staticmethod
    def _keep(cache: dict[str, tuple[str, str]], key: str, value: tuple[str, str]) -> tuple[str, str]:
        if len(cache) >= LIMIT:
            cache.clear()
        cache[key] = value
        return value
