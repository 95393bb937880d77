"""Instances: create, inspect, list, remove, and the pass-throughs to the host (logs, exec).

Create is all-or-nothing: the row is inserted first (so the name is taken and the instance can be
found), then the agent prepares it; if the agent fails, the row is deleted again. No transaction is held
while an agent works: load, release, call, apply. The lifecycle verbs live in ``lifecycle``.
An instance's ports (its NICs, with their addresses) are made in the transaction that inserts its row
(``netports``) and are deleted with the row.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Generator
from dataclasses import replace
from typing import TYPE_CHECKING, TypedDict

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput, NotFound
from atoll.model.instance import InstanceSpec, InstanceStatus, LogEntry, RestartPolicy
from atoll.model.ports import ExecProcess, ExecSpec, HostAgent
from atoll.schemas import Instance, InstanceCreate
from atoll.services import (
    dnsrecords,
    imagecopy,
    imagehosts,
    images,
    netports,
    overlay,
    placement,
    publish,
    removal_notify,
    secgroup_ports,
)
from atoll.services import volumes as volume_svc
from atoll.services.clock import now_iso
from atoll.services.config_merge import merge_config, restart_policy
from atoll.services.context import Controller
from atoll.services.exits import ACTIVE, STOPPED, delete_instance_row, record_activity, wait_result
from atoll.services.ids import is_hex, new_id
from atoll.services.mounts import image_volumes, plan_mounts
from atoll.services.names import random_name
from atoll.services.projects import require_project
from atoll.services.secgroup_notify import security_changed
from atoll.services.views import image_config, instance_view, spec_json
from atoll.store.models import InstanceRow

if TYPE_CHECKING:
    from typing_extensions import Unpack

NAME_ATTEMPTS = 16
ALLOCATION_ATTEMPTS = 5


def resolve(s: Session, project: str, ref: str) -> InstanceRow:
    """An instance of ``project`` by full id, by name, or by a unique id prefix (Docker's order)."""
    row = s.get(InstanceRow, ref)
    if row is not None and row.project == project:
        return row
    row = s.scalar(select(InstanceRow).where(InstanceRow.project == project, InstanceRow.name == ref))
    if row is not None:
        return row
    if ref and is_hex(ref):
        rows = list(
            s.scalars(
                select(InstanceRow)
                .where(InstanceRow.project == project, InstanceRow.id.startswith(ref))
                .limit(2)
            )
        )
        if len(rows) > 1:
            raise Conflict(f"instance id prefix {ref!r} is ambiguous: it matches several instances")
        if rows:
            return rows[0]
    raise NotFound(f"instance {ref!r} not found")


def _name_taken(s: Session, project: str, name: str) -> InstanceRow | None:
    return s.scalar(select(InstanceRow).where(InstanceRow.project == project, InstanceRow.name == name))


def _pick_name(s: Session, project: str, requested: str | None, instance_id: str) -> str:
    if requested:
        taken = _name_taken(s, project, requested)
        if taken is not None:
            raise Conflict(f"name: {requested!r} is already in use by instance {taken.id[:12]}")
        return requested
    for _ in range(NAME_ATTEMPTS):
        name = random_name()
        if _name_taken(s, project, name) is None:
            return name
    return f"{random_name()}_{instance_id[:6]}"


async def create(ctl: Controller, *, project: str, request: InstanceCreate) -> Instance:
    policy = restart_policy(request)
    for attempt in range(ALLOCATION_ATTEMPTS):
        try:
            view, spec, agent, made = _insert(ctl, project=project, request=request, policy=policy)
            break
        except netports.AllocationRace:
            if attempt == ALLOCATION_ATTEMPTS - 1:
                raise Conflict("networks: addresses are in heavy contention; try again") from None
    try:
        if ctl.cluster is not None:
            await imagecopy.ensure_image(ctl, host_id=agent.host_id, image_id=spec.image_id)
        await agent.create_instance(spec)
    except BaseException as e:
        delete_instance_row(ctl, spec.id, None)
        await volume_svc.forget(ctl, made)  # volumes made for it alone: nothing half-made stays
        if isinstance(e, NotFound) and await imagehosts.forget_lost(ctl, agent, [spec.image_id]):
            raise NotFound(
                f"image {request.image}: host {agent.host_id[:12]} lost it (a crash before its pull was "
                "on disk); pull it again"
            ) from e
        raise
    if spec.ports:
        await overlay.notify_hosts(ctl, except_host=agent.host_id)
        # The new addresses join their groups on every host; its own host loaded them with its veths.
        await security_changed(ctl, except_host=agent.host_id)
    await dnsrecords.announce(ctl, dnsrecords.spec_networks(spec))
    record_activity(ctl, "create", view)
    return view


def _insert(
    ctl: Controller, *, project: str, request: InstanceCreate, policy: RestartPolicy
) -> tuple[Instance, InstanceSpec, HostAgent, list[str]]:
    """The instance's row, its ports and its volumes, in one transaction. Also returns the ids of the
    volumes made for it."""
    instance_id = new_id()
    with ctl.sessions.begin() as s:
        require_project(s, project)
        image, _ = images.resolve(s, project, request.image)
        image.last_used = now_iso()
        name = _pick_name(s, project, request.name, instance_id)
        spec = merge_config(
            image_config(image),
            request,
            instance_id=instance_id,
            name=name,
            project=project,
            image_id=image.id,
            layers=list(image.layers),
        )
        agent = ctl.agents.get(placement.choose_host(ctl, s, spec))
        row = InstanceRow(
            id=instance_id,
            project=project,
            name=name,
            kind=spec.kind,
            image=request.image,
            image_id=image.id,
            host_id=agent.host_id,
            spec=spec_json(spec, request.resources.cpus),
            desired_state=STOPPED,
            status=InstanceStatus.CREATED,
            pid=0,
            created_at=now_iso(),
            started_at="",
            finished_at="",
            exit_code=None,
            oom_killed=False,
            error="",
            restart_count=0,
            restart_streak=0,
            restart_policy=policy.name,
            restart_max_retries=policy.max_retries,
            auto_remove=request.auto_remove,
            user_stopped=False,
            restart_at=None,
        )
        s.add(row)
        try:
            s.flush()
        except IntegrityError as e:
            raise Conflict(f"name: {name!r} is already in use") from e
        if request.networks:
            ports = netports.attach(s, project=project, instance_id=instance_id, requests=request.networks)
            secgroup_ports.bind(s, project=project, ports=ports, groups=request.security_groups)
            spec = replace(spec, ports=ports)
        elif request.security_groups:
            raise InvalidInput("security_groups: the instance has no network to apply them to")
        requests = publish.requests_of(request, image_config(image).exposed_ports)
        if requests:
            published = publish.allocate(s, host_id=agent.host_id, instance_id=instance_id, requests=requests)
            spec = replace(spec, published=published)
        if request.networks or requests:
            row.spec = spec_json(spec, request.resources.cpus)
        made: list[str] = []
        planned = plan_mounts(request.mounts, image_volumes(image.config), ctl.bind_mounts)
        if planned:
            mounts, made = volume_svc.attach(s, project=project, instance_id=instance_id, planned=planned)
            spec = replace(spec, mounts=mounts)
            row.spec = spec_json(spec, request.resources.cpus)
        return instance_view(row), spec, agent, made


def get(ctl: Controller, *, project: str, ref: str) -> Instance:
    with ctl.sessions() as s:
        require_project(s, project)
        return instance_view(resolve(s, project, ref))


def _label_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for w in wanted:
        key, eq, value = w.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


class ListFilters(TypedDict, total=False):
    """Which instances ``list_instances`` and ``instance_batches`` give, like ``docker ps``: running ones
    unless ``all``; a status filter implies ``all``. Label filters (``key`` or ``key=value``) must all
    match; name filters match substrings, any of them. Left out, a filter selects everything."""

    all: bool
    label: list[str] | None
    name: list[str] | None
    status: list[str] | None


def list_instances(ctl: Controller, *, project: str, **filters: Unpack[ListFilters]) -> list[Instance]:
    """The instances ``filters`` selects, in order, in one list (``instance_batches`` joined)."""
    batches = instance_batches(ctl, project=project, **filters)
    return [inst for batch in batches for inst in batch]


LIST_BATCH = 50
"""Rows read and turned into views at a time by ``instance_batches``. Few: what is alive when the
collector runs is promoted to its oldest generation, and every so many promotions it walks every object
of the process (tens of milliseconds each, all threads stopped). A 50,000-row list read 500 at a time
took 6.1 s of CPU, 50 at a time 4.1 s, and the worst stall of other requests fell from 184 to 108 ms
(bench/list_block.py)."""


def instance_batches(
    ctl: Controller, *, project: str, batch: int = LIST_BATCH, **filters: Unpack[ListFilters]
) -> Generator[list[Instance], None, None]:
    """``list_instances`` in order, ``batch`` rows read at a time (one read transaction throughout): a
    caller that consumes each batch before the next (the REST list writes its JSON) keeps a few hundred
    rows alive instead of all of them, and the garbage collector, which walks every live object, stays
    quick. The one place the filters are applied."""
    name, label = filters.get("name"), filters.get("label")
    statuses = set(filters.get("status") or [])
    unknown = statuses - {s.value for s in InstanceStatus}
    if unknown:
        raise InvalidInput(f"status: unknown status {sorted(unknown)[0]!r}")
    with ctl.sessions() as s:
        require_project(s, project)
        query = select(InstanceRow).where(InstanceRow.project == project)
        if statuses:
            query = query.where(InstanceRow.status.in_(statuses))
        elif not filters.get("all", False):
            query = query.where(InstanceRow.status.in_([str(a) for a in ACTIVE]))
        query = query.order_by(InstanceRow.created_at.desc(), InstanceRow.id).execution_options(
            yield_per=batch
        )
        for rows in s.scalars(query).partitions():
            out = []
            for row in rows:
                if name and not any(n in row.name for n in name):
                    continue
                if label and not _label_match(row.spec["labels"], label):
                    continue
                out.append(instance_view(row))
            if out:
                yield out


async def remove(
    ctl: Controller, *, project: str, ref: str, force: bool = False, volumes: bool = False
) -> None:
    """Delete an instance and every trace of it on its host. Running ones need ``force``. With
    ``volumes``, its anonymous volumes go too (``docker rm -v``); named volumes are always kept."""
    with ctl.sessions() as s:
        instance_id = resolve(s, project, ref).id
    async with ctl.locks(instance_id):
        with ctl.sessions.begin() as s:
            row = resolve(s, project, instance_id)
            if row.status in ACTIVE and not force:
                raise Conflict(f"instance {row.name} is {row.status}: stop it first or use force")
            # A host that is gone for good must not pin its instances: with force, forget them here and
            # let the host's agent clean up when (if) it re-syncs.
            agent = ctl.agents.get(row.host_id) if row.host_id in ctl.agents or not force else None
            row.desired_state, row.user_stopped = STOPPED, True
            last = wait_result(row) if row.exit_code is not None else None
            anonymous = volume_svc.anonymous_volumes(s, instance_id) if volumes else []
        ctl.removing.add(instance_id)
        try:
            if agent is not None:
                with contextlib.suppress(NotFound):  # already gone from the host: that is the goal
                    await agent.remove_instance(instance_id)
        finally:
            ctl.removing.discard(instance_id)
        with ctl.sessions() as s:
            row_after = s.get(InstanceRow, instance_id)
            if row_after is not None and row_after.exit_code is not None:
                last = wait_result(row_after)
        gone = removal_notify.footprint(ctl, instance_id)
        delete_instance_row(ctl, instance_id, last)
        await volume_svc.forget(ctl, anonymous)
    # Without ports it was in no overlay and no security group: no other host is told (at a thousand
    # hosts, telling them all made every remove a thousand calls).
    await removal_notify.removed(ctl, gone, host_id=agent.host_id if agent is not None else "")


def logs(
    ctl: Controller,
    *,
    project: str,
    ref: str,
    follow: bool = False,
    tail: int | None = None,
    since: str = "",
) -> AsyncIterator[LogEntry]:
    """Resolve now (so a bad ref fails before any output), then stream from the instance's host."""
    with ctl.sessions() as s:
        require_project(s, project)
        row = resolve(s, project, ref)
        instance_id, host_id = row.id, row.host_id
    return ctl.agents.get(host_id).logs(instance_id, follow=follow, tail=tail, since=since)


async def exec_start(ctl: Controller, *, project: str, ref: str, spec: ExecSpec) -> ExecProcess:
    with ctl.sessions() as s:
        require_project(s, project)
        row = resolve(s, project, ref)
        if row.status != InstanceStatus.RUNNING:
            raise Conflict(f"instance {row.name} is not running")
        instance_id, host_id = row.id, row.host_id
    if any("\x00" in a for a in spec.args):
        raise InvalidInput("args: must not contain NUL bytes")
    return await ctl.agents.get(host_id).exec(instance_id, spec)
