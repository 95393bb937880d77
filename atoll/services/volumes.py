"""Volumes: create, list, inspect, remove, prune, and their use by instances.

A volume belongs to a project and is only ever looked up within it: another project's volume is "not
found", and the same name in two projects names two volumes. A volume is desired state until an
instance uses it; its host then makes the directory (see ``atoll.agent.volumes``).

"In use" is the ``instance_volumes`` table, filled in the transaction that creates an instance
(``attach``) and emptied with the instance's row. A volume in use, by a running instance or a stopped
one, cannot be removed, with or without force: its users are named in the 409. Removing a volume
deletes its row first, then its data on every host (idempotent there), so no instance can start on a
volume whose data is half gone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput, NotFound
from atoll.model.volume import MountSpec, MountType
from atoll.schemas import Volume, VolumeCreate, VolumesPruned
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.ids import is_hex, new_id
from atoll.services.mounts import PlannedMount
from atoll.services.projects import require_project
from atoll.store.models import InstanceRow
from atoll.store.volumes import InstanceVolumeRow, VolumeRow

log = logging.getLogger(__name__)

DRIVERS = ("local",)
LOCAL_OPTIONS: tuple[str, ...] = ()
"""The local driver is a plain directory; it takes no options yet (Docker's ``type``/``device``/``o``
for mounting a device or an NFS share are refused, not ignored)."""
MIN_PREFIX = 4


def resolve(s: Session, project: str, ref: str) -> VolumeRow:
    """A volume of ``project`` by name, by full id, or by a unique id prefix."""
    row = s.scalar(select(VolumeRow).where(VolumeRow.project == project, VolumeRow.name == ref))
    if row is not None:
        return row
    by_id = s.get(VolumeRow, ref)
    if by_id is not None and by_id.project == project:
        return by_id
    if len(ref) >= MIN_PREFIX and is_hex(ref):
        rows = list(
            s.scalars(
                select(VolumeRow).where(VolumeRow.project == project, VolumeRow.id.startswith(ref)).limit(2)
            )
        )
        if len(rows) > 1:
            raise Conflict(f"volume id prefix {ref!r} is ambiguous")
        if rows:
            return rows[0]
    raise NotFound(f"volume {ref!r} not found")


def _users(s: Session, volume_id: str) -> list[str]:
    query = (
        select(InstanceRow.name)
        .join(InstanceVolumeRow, InstanceVolumeRow.instance_id == InstanceRow.id)
        .where(InstanceVolumeRow.volume_id == volume_id)
        .order_by(InstanceRow.name)
    )
    return list(s.scalars(query))


def volume_view(s: Session, row: VolumeRow) -> Volume:
    return Volume(
        id=row.id,
        name=row.name,
        project=row.project,
        driver=row.driver,
        labels=dict(row.labels),
        options=dict(row.options),
        anonymous=row.anonymous,
        used_by=_users(s, row.id),
        created_at=row.created_at,
    )


def _check_driver(driver: str, options: dict[str, str]) -> None:
    if driver not in DRIVERS:
        raise InvalidInput(f"driver: unknown volume driver {driver!r}; one of {', '.join(DRIVERS)}")
    for key in options:
        if key not in LOCAL_OPTIONS:
            raise InvalidInput(f"options.{key}: the local driver takes no option {key!r} (yet)")


def _new_row(
    project: str,
    name: str | None,
    *,
    driver: str = "local",
    labels: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
    anonymous: bool = False,
) -> VolumeRow:
    volume_id = new_id()
    return VolumeRow(
        id=volume_id,
        project=project,
        name=name or volume_id,
        driver=driver,
        labels=dict(labels or {}),
        options=dict(options or {}),
        anonymous=anonymous,
        created_at=now_iso(),
    )


def create_volume(ctl: Controller, *, project: str, request: VolumeCreate) -> Volume:
    """Like ``docker volume create``: creating a name that exists with the same driver returns it."""
    _check_driver(request.driver, request.options)
    with ctl.sessions.begin() as s:
        require_project(s, project)
        if request.name:
            taken = s.scalar(
                select(VolumeRow).where(VolumeRow.project == project, VolumeRow.name == request.name)
            )
            if taken is not None:
                if taken.driver != request.driver or taken.options != request.options:
                    raise Conflict(f"name: volume {request.name!r} already exists with other driver options")
                return volume_view(s, taken)
        # Without a name it is anonymous, as in dockerd >= 23: a plain prune removes it.
        row = _new_row(
            project,
            request.name,
            driver=request.driver,
            labels=request.labels,
            options=request.options,
            anonymous=not request.name,
        )
        s.add(row)
        try:
            s.flush()
        except IntegrityError as e:
            raise Conflict(f"name: volume {request.name!r} already exists") from e
        view = volume_view(s, row)
    _record(ctl, "create", project, view.id, view.name, view.driver)
    return view


def _record(ctl: Controller, action: str, project: str, volume_id: str, name: str, driver: str) -> None:
    ctl.activity.record("volume", action, volume_id, project, name=name, driver=driver)


def get_volume(ctl: Controller, *, project: str, ref: str) -> Volume:
    with ctl.sessions() as s:
        require_project(s, project)
        return volume_view(s, resolve(s, project, ref))


def _label_match(labels: dict[str, str], wanted: Sequence[str]) -> bool:
    for w in wanted:
        key, eq, value = w.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def list_volumes(
    ctl: Controller,
    *,
    project: str,
    name: Sequence[str] = (),
    label: Sequence[str] = (),
    dangling: bool | None = None,
    driver: Sequence[str] = (),
) -> list[Volume]:
    """Docker's filters: ``name`` (substrings, any), ``label`` (``key`` or ``key=value``, all),
    ``dangling`` (unused by any instance, or used), ``driver`` (any)."""
    with ctl.sessions() as s:
        require_project(s, project)
        rows = s.scalars(select(VolumeRow).where(VolumeRow.project == project).order_by(VolumeRow.name))
        out = []
        for row in rows:
            view = volume_view(s, row)
            if name and not any(n in row.name for n in name):
                continue
            if label and not _label_match(row.labels, label):
                continue
            if driver and row.driver not in driver:
                continue
            if dangling is not None and dangling != (not view.used_by):
                continue
            out.append(view)
        return out


async def _remove_data(ctl: Controller, volume_ids: Sequence[str]) -> None:
    """Delete the data of volumes whose rows are gone, on every connected host (idempotent there)."""
    for agent in ctl.agents.all():
        for volume_id in volume_ids:
            try:
                await agent.remove_volume(volume_id)
            except Exception:
                log.exception("could not remove the data of volume %s on host %s", volume_id, agent.host_id)
                raise


async def remove_volume(ctl: Controller, *, project: str, ref: str) -> None:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve(s, project, ref)
        users = _users(s, row.id)
        if users:
            raise Conflict(
                f"volume {row.name} is in use by instance(s) {', '.join(users)}: remove them first"
            )
        volume_id, name, driver = row.id, row.name, row.driver
        s.delete(row)
    await _remove_data(ctl, [volume_id])
    _record(ctl, "destroy", project, volume_id, name, driver)


async def prune(
    ctl: Controller, *, project: str, all: bool = False, label: Sequence[str] = ()
) -> VolumesPruned:
    """Remove unused volumes: the anonymous ones, and named ones too with ``all`` (Docker >= 23)."""
    with ctl.sessions.begin() as s:
        require_project(s, project)
        used = select(InstanceVolumeRow.volume_id)
        query = select(VolumeRow).where(VolumeRow.project == project, VolumeRow.id.not_in(used))
        if not all:
            query = query.where(VolumeRow.anonymous.is_(True))
        rows = [r for r in s.scalars(query.order_by(VolumeRow.name)) if _label_match(r.labels, label)]
        removed = [(r.id, r.name) for r in rows]
        drivers = [r.driver for r in rows]
        for row in rows:
            s.delete(row)
    await _remove_data(ctl, [volume_id for volume_id, _ in removed])
    for (volume_id, name), driver in zip(removed, drivers, strict=True):
        _record(ctl, "destroy", project, volume_id, name, driver)
    return VolumesPruned(deleted=[name for _, name in removed])


def attach(
    s: Session, *, project: str, instance_id: str, planned: Sequence[PlannedMount]
) -> tuple[list[MountSpec], list[str]]:
    """The mounts of a new instance (whose row is in ``s``): volumes found or made (named ones on first
    use, as Docker does), and the links that mark them in use. Returns the mounts and the ids of the
    volumes made here, which the caller forgets again if the instance is not made after all."""
    mounts: list[MountSpec] = []
    made: list[str] = []
    linked: set[str] = set()
    for mount in planned:
        if mount.type != MountType.VOLUME:
            mounts.append(
                MountSpec(
                    type=mount.type,
                    destination=mount.destination,
                    source=mount.source,
                    readonly=mount.readonly,
                    copy_up=False,
                    tmpfs_size=mount.tmpfs_size,
                    tmpfs_mode=mount.tmpfs_mode,
                )
            )
            continue
        row = None
        if mount.source:
            row = s.scalar(
                select(VolumeRow).where(VolumeRow.project == project, VolumeRow.name == mount.source)
            )
        if row is None:
            row = _new_row(project, mount.source or None, anonymous=not mount.source)
            s.add(row)
            s.flush()
            made.append(row.id)
        if row.id not in linked:
            linked.add(row.id)
            s.add(InstanceVolumeRow(instance_id=instance_id, volume_id=row.id))
        mounts.append(
            MountSpec(
                type=MountType.VOLUME,
                destination=mount.destination,
                source=row.id,
                name=row.name,
                readonly=mount.readonly,
                copy_up=mount.copy_up,
            )
        )
    s.flush()
    return mounts, made


def anonymous_volumes(s: Session, instance_id: str) -> list[str]:
    """Ids of the anonymous volumes an instance uses (what ``rm --volumes`` removes with it)."""
    query = (
        select(VolumeRow.id)
        .join(InstanceVolumeRow, InstanceVolumeRow.volume_id == VolumeRow.id)
        .where(InstanceVolumeRow.instance_id == instance_id, VolumeRow.anonymous.is_(True))
    )
    return list(s.scalars(query))


async def forget(ctl: Controller, volume_ids: Sequence[str]) -> None:
    """Remove volumes that no instance uses any more (rows, then data); those still in use are kept."""
    gone = []
    forgotten: list[tuple[str, str, str, str]] = []
    with ctl.sessions.begin() as s:
        for volume_id in volume_ids:
            row = s.get(VolumeRow, volume_id)
            if row is not None and not _users(s, volume_id):
                s.delete(row)
                gone.append(volume_id)
                forgotten.append((row.project, row.id, row.name, row.driver))
    if gone:
        try:
            await _remove_data(ctl, gone)
        except Exception:  # the instance is gone either way; the data waits for a retry by hand
            log.warning("volumes %s: rows removed, but their data could not be removed", gone)
    for project, volume_id, name, driver in forgotten:
        _record(ctl, "destroy", project, volume_id, name, driver)
