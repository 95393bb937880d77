"""Cluster membership: join tokens, admitting hosts, heartbeats, and the host states they imply.

A host's state is derived from three facts: whether it heartbeats (``down`` after
``heartbeat_timeout`` of silence, set by ``mark_silent_hosts_down`` from a controller loop), whether an
operator drained it (``draining`` for the scheduler; the row keeps ``ready`` plus ``drained``), and
whether its agent went away cleanly (``offline``, under ``atoll up``). A heartbeat from a ``down`` host
brings it back to ``ready``: the host was only unreachable, its instances never stopped.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select

from atoll.host_schemas import HostDetail, JoinAnswer, JoinRequest, Resources, Token
from atoll.model.cluster import HostReport
from atoll.model.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from atoll.services.clock import now_iso
from atoll.services.clusterconf import ClusterConfig
from atoll.services.context import Controller
from atoll.services.ids import new_id
from atoll.services.placement import allocations, instance_counts
from atoll.store.cluster import ClusterHostRow, JoinTokenRow
from atoll.store.models import HostRow, ImageHostRow, InstanceRow
from atoll.wire import pki, tokens

log = logging.getLogger(__name__)

READY, DOWN, OFFLINE, JOINING = "ready", "down", "offline", "joining"
FENCING = "fencing"
"""Back from ``down``, until its agent has dropped the copies placed elsewhere meanwhile."""


def _cluster(ctl: Controller) -> ClusterConfig:
    if ctl.cluster is None:
        raise Conflict("this controller runs a single-node cloud (`atoll up`); start it with `atoll serve`")
    return ctl.cluster


def create_token(ctl: Controller, *, ttl: float) -> Token:
    cluster = _cluster(ctl)
    token = tokens.JoinToken(
        address=cluster.address,
        ca_fingerprint=pki.fingerprint(cluster.ca_cert_pem),
        secret=tokens.new_secret(),
    )
    expires_at = time.time() + ttl
    with ctl.sessions.begin() as s:
        s.add(
            JoinTokenRow(
                secret_hash=token.secret_hash,
                created_at=now_iso(),
                expires_at=expires_at,
                used_at="",
                used_by="",
            )
        )
    return Token(token=token.encode(), expires_at=expires_at)


def join(ctl: Controller, request: JoinRequest) -> JoinAnswer:
    """Spend the token and admit the host, in one transaction: a token admits exactly one host."""
    cluster = _cluster(ctl)
    host_id = new_id()[:32]
    with ctl.sessions.begin() as s:
        row = s.get(JoinTokenRow, tokens.hash_secret(request.secret))
        if row is None:
            raise Unauthorized("token: not issued by this controller (forged, or from another cloud)")
        if row.used_at:
            raise Unauthorized(f"token: already used at {row.used_at}; tokens are single-use")
        if row.expires_at < time.time():
            raise Unauthorized("token: expired; create a new one with `atoll token create`")
        # Signing is CPU work of a millisecond, no I/O: it may happen inside the transaction, and a bad
        # CSR then leaves the token unspent.
        certificate = pki.issue(
            cluster.ca_key_pem, cluster.ca_cert_pem, request.csr.encode(), host_id, pki.host_dns_name(host_id)
        )
        row.used_at, row.used_by = now_iso(), host_id
        s.add(
            HostRow(
                id=host_id,
                name=request.name,
                state=JOINING,
                runtime="",
                cgroup_version=0,
                last_seen=now_iso(),
            )
        )
        s.flush()
        s.add(
            ClusterHostRow(
                host_id=host_id,
                address=request.address,
                cert_serial=pki.serial_of(certificate),
                joined_at=now_iso(),
                heartbeat_at=time.time(),
                drained=False,
                cpu_millis=0,
                memory_bytes=0,
                disk_bytes=0,
                pids=0,
                used={},
                labels={},
            )
        )
    # Not dialled yet: the agent starts serving after it has its certificate; its first heartbeat
    # says it is listening.
    log.info("host %s (%s) joined from %s", request.name, host_id, request.address)
    return JoinAnswer(host_id=host_id, certificate=certificate.decode(), ca=cluster.ca_cert_pem.decode())


def authorize_host(ctl: Controller, host_id: str | None) -> str:
    """The host behind a verified client certificate, if it is still a member."""
    if host_id is None:
        raise Unauthorized("certificate: this call needs a host certificate issued at join")
    # From memory once known (services/liveness.py): `host rm` drops the host from it at once.
    if not ctl.members.is_member(ctl.sessions, host_id):
        raise Forbidden(f"certificate: host {host_id} is not a member of this cluster (removed?)")
    return host_id


def _connect(ctl: Controller, host_id: str, address: str, *, announce: bool) -> None:
    """Route calls for ``host_id`` to ``address``; ``announce`` runs the on-connect hook (starter image)
    when the host is new to this controller process, moved, or came back."""
    cluster = _cluster(ctl)
    current = ctl.agents.get(host_id) if host_id in ctl.agents else None
    if current is None or getattr(current, "address", None) != address:
        current = cluster.connect(host_id, address)
        ctl.agents.add(current)
        announce = True
    if announce and cluster.on_host_connected is not None:
        cluster.on_host_connected(current)


def connect_known_hosts(ctl: Controller) -> None:
    """At controller start: dial every member that was up, without waiting for its next heartbeat."""
    with ctl.sessions() as s:
        rows = [(r.host_id, r.address) for r in s.scalars(select(ClusterHostRow))]
    for host_id, address in rows:
        _connect(ctl, host_id, address, announce=False)


def heartbeat(ctl: Controller, host_id: str, report: HostReport) -> None:
    live = ctl.liveness
    if host_id in ctl.agents and live.unchanged(host_id, report):
        # Nothing changed since the last full beat, and the host is still ready and connected here:
        # only its time, written with the others in the next batch (services/liveness.py).
        live.beat(host_id, time.time())
        live.flush_if_due(ctl.sessions)
        return
    returned = ctl.cluster.on_host_returned if ctl.cluster is not None else None
    with ctl.sessions.begin() as s:
        row = s.get(ClusterHostRow, host_id)
        host = s.get(HostRow, host_id)
        if row is None or host is None:
            raise Forbidden(f"host_id: host {host_id} is not a member of this cluster")
        row.address, row.heartbeat_at = report.address, time.time()
        c, u = report.capacity, report.used
        row.cpu_millis, row.memory_bytes, row.disk_bytes, row.pids = (
            c.cpu_millis,
            c.memory_bytes,
            c.disk_bytes,
            c.pids,
        )
        row.used = {
            "cpu_millis": u.cpu_millis,
            "memory_bytes": u.memory_bytes,
            "disk_bytes": u.disk_bytes,
            "pids": u.pids,
        }
        # A host back from ``down`` is fenced before it is ready (services/failover.py): its agent drops
        # the copies that were placed elsewhere meanwhile. Beats during the fence change nothing.
        fencing = host.state in (DOWN, FENCING) and returned is not None
        came_back = host.state not in (READY, FENCING)
        if came_back:
            log.info("host %s (%s) is %s", host.name, host_id, FENCING if fencing else READY)
        host.name, host.runtime, host.cgroup_version = report.name, report.runtime, report.cgroup_version
        host.state, host.last_seen = (FENCING if fencing else READY), now_iso()
    if fencing:
        live.forget(host_id)
    else:
        live.remember(host_id, report)
    _connect(ctl, host_id, report.address, announce=came_back)
    if came_back and fencing and returned is not None:
        returned(host_id)


def mark_silent_hosts_down(ctl: Controller) -> list[str]:
    """Hosts whose heartbeat is older than the timeout become ``down`` and stop taking placements."""
    cluster = _cluster(ctl)
    ctl.liveness.flush(ctl.sessions)  # this process's beats first: the others' are at most one batch old
    cutoff = time.time() - cluster.heartbeat_timeout
    downed = []
    with ctl.sessions.begin() as s:
        rows = s.execute(
            select(HostRow, ClusterHostRow)
            .join(ClusterHostRow, ClusterHostRow.host_id == HostRow.id)
            .where(HostRow.state.in_((READY, FENCING)), ClusterHostRow.heartbeat_at < cutoff)
        )
        for host, _ in rows:
            host.state = DOWN
            downed.append(host.id)
            log.warning(
                "host %s (%s) is down: no heartbeat for %.0f s", host.name, host.id, cluster.heartbeat_timeout
            )
    # Disconnected until it heartbeats again: imports and pulls go elsewhere, calls for its instances
    # fail at once ("not connected") instead of waiting on a dead address, and `rm -f` can forget them.
    for host_id in downed:
        ctl.agents.discard(host_id)
        ctl.liveness.forget(host_id)
    return downed


def _resources(row: ClusterHostRow) -> Resources:
    return Resources(
        cpu_millis=row.cpu_millis, memory_bytes=row.memory_bytes, disk_bytes=row.disk_bytes, pids=row.pids
    )


def _detail(host: HostRow, member: ClusterHostRow | None, allocated: Resources, instances: int) -> HostDetail:
    state = host.state
    if member is not None and member.drained and state == READY:
        state = "draining"
    return HostDetail(
        id=host.id,
        name=host.name,
        state=state,
        drained=bool(member and member.drained),
        address=member.address if member else "",
        runtime=host.runtime,
        cgroup_version=host.cgroup_version,
        capacity=_resources(member) if member else None,
        allocated=allocated,
        used=Resources(**member.used) if member and member.used else None,
        instances=instances,
        heartbeat_age=round(time.time() - member.heartbeat_at, 3) if member else None,
        last_seen=host.last_seen,
    )


def list_hosts(ctl: Controller) -> list[HostDetail]:
    with ctl.sessions() as s:
        members = {r.host_id: r for r in s.scalars(select(ClusterHostRow))}
        usage = allocations(s, instances=False)
        counts = instance_counts(s)
        out = []
        for host in s.scalars(select(HostRow).order_by(HostRow.name, HostRow.id)):
            used = usage.get(host.id)
            allocated = (
                Resources(
                    cpu_millis=used.cpu_millis,
                    memory_bytes=used.memory_bytes,
                    disk_bytes=used.disk_bytes,
                    pids=used.pids,
                )
                if used
                else Resources()
            )
            out.append(_detail(host, members.get(host.id), allocated, counts.get(host.id, 0)))
        return out


def _find(ctl: Controller, ref: str) -> str:
    """A host by id, unique id prefix, or name."""
    hosts = list_hosts(ctl)
    exact = [h for h in hosts if ref in (h.id, h.name)]
    matches = exact or [h for h in hosts if ref and h.id.startswith(ref)]
    if not matches:
        raise NotFound(f"host {ref!r} not found")
    if len(matches) > 1:
        raise Conflict(f"host {ref!r} is ambiguous: it matches {len(matches)} hosts")
    return matches[0].id


def get_host(ctl: Controller, *, ref: str) -> HostDetail:
    host_id = _find(ctl, ref)
    return next(h for h in list_hosts(ctl) if h.id == host_id)


def set_drained(ctl: Controller, *, ref: str, drained: bool) -> HostDetail:
    host_id = _find(ctl, ref)
    with ctl.sessions.begin() as s:
        member = s.get(ClusterHostRow, host_id)
        if member is None:
            raise InvalidInput(
                f"host: {ref!r} is the local host of a single-node cloud; it cannot be drained"
            )
        member.drained = drained
    return get_host(ctl, ref=host_id)


def remove_host(ctl: Controller, *, ref: str) -> None:
    """Forget a host and revoke its certificate (its membership row goes). Refused while instances are
    placed there: remove or move them first."""
    host_id = _find(ctl, ref)
    with ctl.sessions.begin() as s:
        if s.scalar(select(InstanceRow.id).where(InstanceRow.host_id == host_id).limit(1)) is not None:
            raise Conflict(f"host {ref!r} still has instances; remove them first")
        host = s.get(HostRow, host_id)
        if host is not None:
            s.delete(host)
    ctl.members.drop(host_id)  # refused from the next call on, with no await in between
    ctl.liveness.forget(host_id)
    ctl.agents.discard(host_id)


def record_image_on_host(ctl: Controller, *, image_id: str, host_id: str) -> None:
    """The host holds this image's content (found there when it connected)."""
    with ctl.sessions.begin() as s:
        if s.get(ImageHostRow, (image_id, host_id)) is None:
            s.add(ImageHostRow(image_id=image_id, host_id=host_id))
