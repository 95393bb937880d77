"""Controllers sharing one database: one CA for all of them, and a list of their addresses for agents.

- **One CA.** Host certificates are signed by the cluster CA and every controller's certificate too,
  so an agent that joined through one controller trusts all of them (it verifies the name
  ``controller.atoll`` against the CA). The first controller to start puts its CA (the one in its
  ``DATA/cluster/``, or a new one) into ``cluster_ca``; every later one writes that CA into its own
  data directory before it makes its certificate. A data directory whose CA differs from the database's is
  refused: its hosts would not trust the others.
- **Addresses.** Each controller records the cluster address it advertises in ``controllers`` and
  renews ``seen_at`` every lease interval while it runs. Agents ask for the list
  (``ControlPlane.controllers``) with every heartbeat and fail over to the next address when the one
  they use stops answering.
- **Expiry.** A controller that has not renewed its row for ``EXPIRY_INTERVALS`` lease intervals
  (``ClusterConfig.controller_expiry``) is gone: it is no longer listed to agents (which then drop it,
  ``agent/cluster/failover.refresh``), ``atoll controller ls`` shows it ``expired``, and the lease
  holder deletes its row (``expire_forever``). Judged by the readers' clocks against the writer's
  ``time.time()``: controllers' clocks are assumed NTP-synced, well within the expiry. A controller
  that was only paused (a stopped process, a database outage) writes its row again at its next
  renewal and is listed again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from atoll.model.errors import Conflict
from atoll.schemas_controllers import ControllerInfo
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.store.cluster import ClusterHostRow
from atoll.store.controllers import ClusterCaRow, ControllerRow
from atoll.store.models import HostRow
from atoll.wire import pki

log = logging.getLogger(__name__)

CA_ROW = 1
EXPIRY_INTERVALS = 5
"""Lease intervals without a renewal after which a controller counts as gone (10 s at the default 2 s)."""


def _stored_ca(sessions: sessionmaker[Session]) -> tuple[str, str] | None:
    with sessions() as s:
        row = s.get(ClusterCaRow, CA_ROW)
        return (row.key_pem, row.cert_pem) if row is not None else None


def share_ca(sessions: sessionmaker[Session], cluster_dir: Path) -> None:
    """Make sure ``cluster_dir`` holds the database's CA: adopt it, or publish this directory's (made now
    if there is none). Two controllers starting at once on an empty database race on the row's key: the
    loser adopts the winner's CA before it makes its own certificate."""
    key_path, cert_path = cluster_dir / "ca.key", cluster_dir / "ca.crt"
    stored = _stored_ca(sessions)
    if stored is None:
        if key_path.exists():
            mine = (key_path.read_text(), cert_path.read_text())
        else:
            key_pem, cert_pem = pki.make_ca()
            mine = (key_pem.decode(), cert_pem.decode())
        try:
            with sessions.begin() as s:
                s.add(ClusterCaRow(id=CA_ROW, key_pem=mine[0], cert_pem=mine[1]))
            stored = mine
        except IntegrityError:
            stored = _stored_ca(sessions)
            assert stored is not None
    if cert_path.exists() and cert_path.read_text() == stored[1]:
        return
    if cert_path.exists() and key_path.exists():
        raise Conflict(
            f"{cert_path}: this data directory holds another cluster CA than the database; hosts joined "
            "through one controller would not trust the other. Start this controller with a fresh data "
            "directory to adopt the database's CA."
        )
    cluster_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path.touch(mode=0o600)
    key_path.write_text(stored[0])
    cert_path.write_text(stored[1])


def register(sessions: sessionmaker[Session], *, address: str, api_url: str) -> None:
    with sessions.begin() as s:
        row = s.get(ControllerRow, address)
        if row is None:
            row = ControllerRow(address=address)
            s.add(row)
        row.api_url, row.started_at, row.seen_at = api_url, now_iso(), time.time()


def touch(sessions: sessionmaker[Session], address: str, api_url: str) -> None:
    """Renew this controller's ``seen_at``; write the row again if the lease holder expired it."""
    with sessions.begin() as s:
        row = s.get(ControllerRow, address)
        if row is None:
            log.warning("controller %s was expired (not seen for a while); listing it again", address)
            row = ControllerRow(address=address, api_url=api_url, started_at=now_iso())
            s.add(row)
        row.seen_at = time.time()


def expiry(ctl: Controller) -> float:
    """Seconds without a renewal after which a controller is gone."""
    return ctl.cluster.controller_expiry if ctl.cluster is not None else EXPIRY_INTERVALS * 2.0


def _fresh_since(max_age: float) -> float:
    return time.time() - max_age


def addresses(sessions: sessionmaker[Session], max_age: float) -> list[str]:
    """The cluster address of every controller seen within ``max_age`` seconds, the most recent first."""
    with sessions() as s:
        return list(
            s.scalars(
                select(ControllerRow.address)
                .where(ControllerRow.seen_at >= _fresh_since(max_age))
                .order_by(ControllerRow.seen_at.desc())
            )
        )


def listing(sessions: sessionmaker[Session], max_age: float) -> list[ControllerInfo]:
    """Every controller row, expired ones too (until the lease holder deletes them)."""
    now = time.time()
    with sessions() as s:
        rows = s.scalars(select(ControllerRow).order_by(ControllerRow.address)).all()
        return [
            ControllerInfo(
                address=r.address,
                api_url=r.api_url,
                started_at=r.started_at,
                seen_age=round(max(0.0, now - r.seen_at), 3),
                state="alive" if now - r.seen_at <= max_age else "expired",
            )
            for r in rows
        ]


def expire(sessions: sessionmaker[Session], max_age: float) -> list[str]:
    """Delete the rows of controllers not seen within ``max_age``; returns their addresses."""
    with sessions.begin() as s:
        gone = list(
            s.scalars(
                delete(ControllerRow)
                .where(ControllerRow.seen_at < _fresh_since(max_age))
                .returning(ControllerRow.address)
            )
        )
    for address in gone:
        log.warning("controller %s expired: no sign of life for %.0f s", address, max_age)
    return gone


async def keep_alive(sessions: sessionmaker[Session], address: str, api_url: str, interval: float) -> None:
    """Renew this controller's ``seen_at`` (every controller runs this, lease or not)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(touch, sessions, address, api_url)
        except Exception as e:  # the database is unreachable: the next round tries again
            log.warning("could not renew this controller's presence: %s", e)


async def expire_forever(sessions: sessionmaker[Session], max_age: float, interval: float) -> None:
    """Under the lease: forget controllers that stopped renewing their row."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(expire, sessions, max_age)
        except Exception:
            log.exception("expiring controllers failed")


def follow_hosts(ctl: Controller) -> None:
    """Route calls to every host the database says is up, and none to those it says are down.

    Hosts heartbeat to one controller at a time, and only the lease holder marks silent hosts down; the
    other controllers learn both from the database, so their API places on the same hosts."""
    cluster = ctl.cluster
    if cluster is None:
        return
    with ctl.sessions() as s:
        rows = s.execute(
            select(HostRow.id, HostRow.state, ClusterHostRow.address).join(
                ClusterHostRow, ClusterHostRow.host_id == HostRow.id
            )
        ).all()
    # Hosts removed through another controller are refused here from now on (services/liveness.py).
    ctl.members.keep_only({host_id for host_id, _, _ in rows})
    for host_id, state, address in rows:
        if state != "ready":
            ctl.agents.discard(host_id)
            ctl.liveness.forget(host_id)  # its next beat takes the full path, which brings it back
            continue
        current = ctl.agents.get(host_id) if host_id in ctl.agents else None
        if current is None or getattr(current, "address", None) != address:
            ctl.agents.add(cluster.connect(host_id, address))


async def follow_hosts_forever(ctl: Controller, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            follow_hosts(ctl)
        except Exception:
            log.exception("following the hosts' states failed")
