"""The image catalog.

Hosts hold image content; the catalog holds who owns which image under which tags. A project sees its
own images and the public ones (the starter image). References resolve as in Docker: a full id, then a
``name[:tag]``, then a unique id prefix. Removal follows ``docker rmi``:

- a tag that is one of several tags of its image is only untagged;
- removing the last tag, or removing by id, deletes the image; by id, an image with several tags needs
  ``force`` (which untags them all);
- an image used by a running instance is never removed; one used only by stopped instances needs
  ``force``, and even then it is only untagged, because those instances still need it;
- content leaves a host only when no project's catalog and no instance refer to it any more.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput, NotFound
from atoll.model.image import ImageConfig, ImageRecord
from atoll.model.instance import InstanceStatus
from atoll.model.reference import ImageReference, parse_image_reference
from atoll.schemas import Image, ImageConfigWire, ImageRemoved
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.projects import require_project
from atoll.services.refs import Reference, full_id, id_prefix, parse_reference
from atoll.services.views import config_from_wire, image_view
from atoll.store.models import ImageDigestRow, ImageHostRow, ImageRow, ImageTagRow, InstanceRow

log = logging.getLogger(__name__)

_ACTIVE = (InstanceStatus.RUNNING, InstanceStatus.RESTARTING)


def _visible(project: str) -> ColumnElement[bool]:
    return or_(ImageRow.project == project, ImageRow.public.is_(True))


def _prefer_own(rows: list[ImageRow], project: str) -> ImageRow:
    return next((r for r in rows if r.project == project), rows[0])


def _by_id(s: Session, project: str, image_id: str) -> ImageRow | None:
    rows = list(s.scalars(select(ImageRow).where(ImageRow.id == image_id, _visible(project))))
    return _prefer_own(rows, project) if rows else None


def _by_tag(s: Session, project: str, ref: Reference) -> ImageRow | None:
    own = s.get(ImageTagRow, (project, ref.repo, ref.tag))
    if own is not None:
        return s.get(ImageRow, (project, own.image_id))
    rows = list(
        s.scalars(
            select(ImageRow)
            .join(
                ImageTagRow, (ImageTagRow.project == ImageRow.project) & (ImageTagRow.image_id == ImageRow.id)
            )
            .where(ImageRow.public.is_(True), ImageTagRow.repo == ref.repo, ImageTagRow.tag == ref.tag)
            .order_by(ImageRow.project)
        )
    )
    if len({r.id for r in rows}) > 1:
        owners = ", ".join(r.project for r in rows)
        raise Conflict(f"image {ref} is ambiguous: public images of projects {owners} carry that tag")
    return rows[0] if rows else None


def _by_digest(s: Session, project: str, ref: ImageReference) -> ImageRow | None:
    """``repo@sha256:...``: the project's own record first, then a public image's."""
    rows = list(
        s.scalars(
            select(ImageRow)
            .join(
                ImageDigestRow,
                (ImageDigestRow.project == ImageRow.project) & (ImageDigestRow.image_id == ImageRow.id),
            )
            .where(
                _visible(project),
                ImageDigestRow.repo == ref.repository,
                ImageDigestRow.digest == ref.digest,
            )
        )
    )
    return _prefer_own(rows, project) if rows else None


def _by_prefix(s: Session, project: str, ref: str, prefix: str) -> ImageRow | None:
    rows = list(s.scalars(select(ImageRow).where(ImageRow.id.startswith(prefix), _visible(project))))
    ids = sorted({r.id for r in rows})
    if len(ids) > 1:
        raise Conflict(f"image id prefix {ref!r} is ambiguous: it matches {len(ids)} images")
    return _prefer_own(rows, project) if rows else None


def resolve(s: Session, project: str, ref: str) -> tuple[ImageRow, Reference | None]:
    """The image ``ref`` names in ``project``, and the tag if it was named by one."""
    if not ref:
        raise InvalidInput("image: must not be empty")
    fid = full_id(ref)
    if fid is not None:
        row = _by_id(s, project, fid)
        if row is None:
            raise NotFound(f"image {ref!r} not found")
        return row, None
    if "@" in ref:
        by_digest = _by_digest(s, project, parse_image_reference(ref, "image"))
        if by_digest is None:
            raise NotFound(f"image {ref!r} not found")
        return by_digest, None
    parsed: Reference | None = None
    bad_format: InvalidInput | None = None
    if not ref.startswith("sha256:"):
        try:
            parsed = parse_reference(ref, "image")
        except InvalidInput as e:
            bad_format = e
        if parsed is not None:
            row = _by_tag(s, project, parsed)
            if row is not None:
                return row, parsed
    prefix = id_prefix(ref)
    if prefix is not None:
        row = _by_prefix(s, project, ref, prefix)
        if row is not None:
            return row, None
    if bad_format is not None:
        raise bad_format
    raise NotFound(f"image {ref!r} not found")


def tags_of(s: Session, project: str, image_id: str) -> list[str]:
    rows = s.scalars(
        select(ImageTagRow)
        .where(ImageTagRow.project == project, ImageTagRow.image_id == image_id)
        .order_by(ImageTagRow.repo, ImageTagRow.tag)
    )
    return [f"{t.repo}:{t.tag}" for t in rows]


def digests_of(s: Session, project: str, image_id: str) -> list[str]:
    rows = s.scalars(
        select(ImageDigestRow)
        .where(ImageDigestRow.project == project, ImageDigestRow.image_id == image_id)
        .order_by(ImageDigestRow.repo, ImageDigestRow.digest)
    )
    return [f"{d.repo}@{d.digest}" for d in rows]


def record_digest(s: Session, project: str, repo: str, digest: str, image_id: str) -> None:
    """Name ``image_id`` ``repo@digest`` in ``project`` (a registry now serves it under that digest)."""
    row = s.get(ImageDigestRow, (project, repo, digest))
    if row is None:
        s.add(ImageDigestRow(project=project, repo=repo, digest=digest, image_id=image_id))
    else:
        row.image_id = image_id


def _view(s: Session, row: ImageRow) -> Image:
    return image_view(row, tags_of(s, row.project, row.id), digests_of(s, row.project, row.id))


def list_images(ctl: Controller, *, project: str) -> list[Image]:
    with ctl.sessions() as s:
        require_project(s, project)
        rows = s.scalars(
            select(ImageRow).where(_visible(project)).order_by(ImageRow.created_at.desc(), ImageRow.id)
        )
        by_id: dict[str, ImageRow] = {}
        for row in rows:
            if row.id not in by_id or row.project == project:
                by_id[row.id] = row
        return [_view(s, r) for r in by_id.values()]


def get_image(ctl: Controller, *, project: str, ref: str) -> Image:
    with ctl.sessions() as s:
        require_project(s, project)
        return _view(s, resolve(s, project, ref)[0])


def image_id(ctl: Controller, *, project: str, ref: str) -> str:
    """The id of the image ``ref`` names (NotFound if none): ``get_image`` without building the view
    (tags, digests, config), for callers that only need to know the image is there."""
    with ctl.sessions() as s:
        require_project(s, project)
        return resolve(s, project, ref)[0].id


def _set_tag(s: Session, project: str, ref: Reference, image_id: str) -> None:
    """Point ``ref`` at ``image_id`` in ``project``, moving it away from any other image."""
    row = s.get(ImageTagRow, (project, ref.repo, ref.tag))
    if row is None:
        s.add(ImageTagRow(project=project, repo=ref.repo, tag=ref.tag, image_id=image_id))
    else:
        row.image_id = image_id


def _upsert(s: Session, project: str, rec: ImageRecord, public: bool, host_id: str | None) -> ImageRow:
    row = s.get(ImageRow, (project, rec.id))
    if row is None:
        row = ImageRow(
            project=project,
            id=rec.id,
            public=public,
            size=rec.size,
            created=rec.created,
            architecture=rec.architecture,
            os=rec.os,
            layers=list(rec.layers),
            config=rec.config.to_oci(),
            created_at=now_iso(),
        )
        s.add(row)
    else:
        row.public = row.public or public
    if host_id is not None and s.get(ImageHostRow, (rec.id, host_id)) is None:
        s.add(ImageHostRow(image_id=rec.id, host_id=host_id))
    s.flush()
    return row


async def import_images(
    ctl: Controller, *, project: str, chunks: AsyncIterator[bytes], public: bool = False
) -> list[Image]:
    """Import a ``docker save`` / OCI layout stream on a host and catalog what it held."""
    return [
        view for view, _ in await import_images_with_names(ctl, project=project, chunks=chunks, public=public)
    ]


async def import_images_with_names(
    ctl: Controller, *, project: str, chunks: AsyncIterator[bytes], public: bool = False
) -> list[tuple[Image, list[str]]]:
    """``import_images``, each image with the names the archive itself gave it (``docker load``
    reports those, not every tag the image has in the project)."""
    with ctl.sessions() as s:
        require_project(s, project)
    agent = ctl.agents.pick()
    records = await agent.import_images(chunks)
    views = catalog(ctl, project=project, records=records, host_id=agent.host_id, public=public)
    names: dict[str, list[str]] = {}
    for rec in records:
        for tag in rec.repo_tags:
            with contextlib.suppress(InvalidInput):  # catalog skipped it too
                names.setdefault(rec.id, []).append(str(parse_reference(tag, "repo_tags")))
    return [(view, names.get(view.id, [])) for view in views]


def catalog(
    ctl: Controller,
    *,
    project: str,
    records: list[ImageRecord],
    host_id: str,
    public: bool = False,
    pulled_as: tuple[str, str] | None = None,
) -> list[Image]:
    """Record images a host now holds (imported or pulled), tagged with the names they came with.
    ``pulled_as`` is ``(repo, manifest digest)`` of a pull: the image's repo digest."""
    with ctl.sessions.begin() as s:
        rows = []
        for rec in records:
            rows.append(_upsert(s, project, rec, public, host_id))
            if pulled_as is not None:
                record_digest(s, project, *pulled_as, rec.id)
            for tag in rec.repo_tags:
                try:
                    ref = parse_reference(tag, "repo_tags")
                except InvalidInput as e:
                    log.warning("image %s: ignoring tag: %s", rec.id, e)
                    continue
                _set_tag(s, project, ref, rec.id)
        s.flush()
        return [_view(s, r) for r in rows]


async def build_image(
    ctl: Controller,
    *,
    project: str,
    chunks: AsyncIterator[bytes],
    tag: str | None,
    config: ImageConfigWire | ImageConfig,
    public: bool = False,
) -> Image:
    """Make a one-layer image from a root filesystem tar stream, tagged ``tag`` when given."""
    ref = parse_reference(tag, "tag") if tag else None
    cfg = config_from_wire(config) if isinstance(config, ImageConfigWire) else config
    with ctl.sessions() as s:
        require_project(s, project)
    agent = ctl.agents.pick()
    rec = await agent.build_image(chunks, cfg)
    with ctl.sessions.begin() as s:
        row = _upsert(s, project, rec, public, agent.host_id)
        if ref is not None:
            _set_tag(s, project, ref, rec.id)
        s.flush()
        return _view(s, row)


def tag_image(ctl: Controller, *, project: str, ref: str, tag: str) -> Image:
    """Tag a visible image in ``project``; tagging a public image of another project adopts it."""
    target = parse_reference(tag, "tag")
    with ctl.sessions.begin() as s:
        require_project(s, project)
        src, _ = resolve(s, project, ref)
        if src.project != project:
            rec = ImageRecord(
                id=src.id,
                repo_tags=[],
                layers=list(src.layers),
                size=src.size,
                created=src.created,
                architecture=src.architecture,
                os=src.os,
                config=ImageConfig.from_oci(src.config),
            )
            src = _upsert(s, project, rec, False, None)
        _set_tag(s, project, target, src.id)
        s.flush()
        view = _view(s, src)
    ctl.activity.record("image", "tag", view.id, project, name=str(target))
    return view


def _users(s: Session, row: ImageRow) -> list[InstanceRow]:
    query = select(InstanceRow).where(InstanceRow.image_id == row.id)
    if not row.public:
        query = query.where(InstanceRow.project == row.project)
    return list(s.scalars(query.order_by(InstanceRow.created_at)))


def _plan_removal(s: Session, project: str, ref: str, force: bool) -> tuple[ImageRemoved, list[str]]:
    """Untag what must be untagged now; return the result and, if the image goes, the hosts to clean."""
    row, by_tag = resolve(s, project, ref)
    if row.project != project:
        raise Conflict(f"image {ref!r} belongs to project {row.project!r}; only that project can remove it")
    tags = tags_of(s, project, row.id)
    digests = digests_of(s, project, row.id)
    by_digest = parse_image_reference(ref, "image") if "@" in ref else None
    # As in Docker, a name (tag or repo digest) is only untagged while the image has other names, and
    # the digests of a repository go with its last tag (they name what that tag pulled or pushed).
    if by_tag is not None:
        tags_left = [t for t in tags if t != str(by_tag)]
        repo_left = any(t.rpartition(":")[0] == by_tag.repo for t in tags_left)
        gone = [] if repo_left else [d for d in digests if d.partition("@")[0] == by_tag.repo]
        if tags_left or len(digests) > len(gone):
            s.execute(
                delete(ImageTagRow).where(
                    ImageTagRow.project == project,
                    ImageTagRow.repo == by_tag.repo,
                    ImageTagRow.tag == by_tag.tag,
                )
            )
            if gone:
                s.execute(
                    delete(ImageDigestRow).where(
                        ImageDigestRow.project == project,
                        ImageDigestRow.repo == by_tag.repo,
                        ImageDigestRow.image_id == row.id,
                    )
                )
            return ImageRemoved(untagged=[str(by_tag), *gone]), []
    if by_digest is not None and len(tags) + len(digests) > 1:
        s.execute(
            delete(ImageDigestRow).where(
                ImageDigestRow.project == project,
                ImageDigestRow.repo == by_digest.repository,
                ImageDigestRow.digest == by_digest.digest,
            )
        )
        return ImageRemoved(untagged=[f"{by_digest.repository}@{by_digest.digest}"]), []
    by_name = by_tag or by_digest
    short = row.id.removeprefix("sha256:")[:12]
    if by_name is None and len(tags) > 1 and not force:
        raise Conflict(
            f"unable to delete {short} (must be forced): the image has several tags: {', '.join(tags)}"
        )
    users = _users(s, row)
    running = [u for u in users if u.status in _ACTIVE]
    if running:
        u = running[0]
        raise Conflict(
            f"unable to delete {ref} (cannot be forced): "
            f"image is used by running instance {u.name} ({u.id[:12]})"
        )
    if users and not force:
        u = users[0]
        raise Conflict(
            f"unable to delete {ref} (must be forced): "
            f"image is used by stopped instance {u.name} ({u.id[:12]})"
        )
    if users:
        s.execute(delete(ImageTagRow).where(ImageTagRow.project == project, ImageTagRow.image_id == row.id))
        s.execute(
            delete(ImageDigestRow).where(ImageDigestRow.project == project, ImageDigestRow.image_id == row.id)
        )
        return ImageRemoved(untagged=tags + digests), []
    shared = s.scalar(
        select(ImageRow.id).where(ImageRow.id == row.id, ImageRow.project != project).limit(1)
    ) or s.scalar(select(InstanceRow.id).where(InstanceRow.image_id == row.id).limit(1))
    hosts = (
        [] if shared else list(s.scalars(select(ImageHostRow.host_id).where(ImageHostRow.image_id == row.id)))
    )
    return ImageRemoved(untagged=tags + digests, deleted=[row.id]), hosts


async def remove_image(ctl: Controller, *, project: str, ref: str, force: bool = False) -> ImageRemoved:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        image_id = resolve(s, project, ref)[0].id
        result, hosts = _plan_removal(s, project, ref, force)
    for tag in result.untagged:
        ctl.activity.record("image", "untag", image_id, project, name=tag)
    if not result.deleted:
        return result
    image_id = result.deleted[0]
    for host_id in hosts:
        with contextlib.suppress(NotFound):  # the host no longer has it: that is the goal
            await ctl.agents.get(host_id).remove_image(image_id)
    with ctl.sessions.begin() as s:
        s.execute(delete(ImageTagRow).where(ImageTagRow.project == project, ImageTagRow.image_id == image_id))
        mine = (ImageDigestRow.project == project) & (ImageDigestRow.image_id == image_id)
        s.execute(delete(ImageDigestRow).where(mine))
        s.execute(delete(ImageRow).where(ImageRow.project == project, ImageRow.id == image_id))
        if hosts:
            s.execute(
                delete(ImageHostRow).where(ImageHostRow.image_id == image_id, ImageHostRow.host_id.in_(hosts))
            )
    ctl.activity.record("image", "delete", image_id, project, name=ref)
    return result
