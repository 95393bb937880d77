"""Registries, seen from the controller: pulls and pushes (done by an agent), and per-project logins.

The agent moves the bytes (image content lives with it); the controller decides who may, hands the
agent the project's credentials for the call, and catalogs what a pull brought. Credentials are stored
per project (``atoll login``), verified against the registry before they are kept, encrypted at rest
(``secrets.py``), and never leave the controller except towards an agent for a transfer: no API answer
and no log line carries a secret.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput, NotFound, RuntimeFailure
from atoll.model.reference import DOCKER_HUB, HUB_API_HOST, parse_image_reference
from atoll.model.registry import Credential, Pulled, Pushed, TransferEvent
from atoll.schemas import RegistryLoginView, TransferProgress
from atoll.services import images
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.projects import require_project
from atoll.services.secrets import SecretBox, box_for
from atoll.store.models import ImageHostRow, ImageRow, RegistryCredentialRow

_REGISTRY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?$")
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


def normalize_registry(text: str) -> str:
    """``https://index.docker.io/v1/`` -> ``docker.io``; ``http://h:5000/`` -> ``h:5000``."""
    host = text.strip().split("://", 1)[-1].split("/", 1)[0]
    if host in _HUB_NAMES:
        return DOCKER_HUB
    if not _REGISTRY.match(host):
        raise InvalidInput(f"registry: {text!r} is not a registry host[:port]")
    return host


def credentials(s: Session, project: str, box: SecretBox, needed: str) -> dict[str, Credential]:
    """The project's logins by the host they are sent to (Docker Hub's API host for docker.io), their
    passwords decrypted (``secrets.py``). A login that can't be decrypted is an error only for the
    registry the transfer is for (``needed``); others are left out."""
    out: dict[str, Credential] = {}
    for row in s.scalars(select(RegistryCredentialRow).where(RegistryCredentialRow.project == project)):
        try:
            secret = box.open(row.secret, f"login to {row.host} in project {project!r}")
        except RuntimeFailure:
            if row.host == needed:
                raise
            continue
        cred = Credential(row.username, secret)
        out[row.host] = cred
        if row.host == DOCKER_HUB:
            out[HUB_API_HOST] = cred
    return out


def _progress(event: TransferEvent) -> TransferProgress:
    return TransferProgress(
        status=event.status, id=event.id, current=event.current or None, total=event.total
    )


def _with_credential(
    creds: dict[str, Credential], domain: str, credential: Credential | None
) -> dict[str, Credential]:
    """The project's logins, with ``credential`` (a client's, for this transfer only) for ``domain``."""
    if credential is None:
        return creds
    out = {**creds, domain: credential}
    if domain == DOCKER_HUB:
        out[HUB_API_HOST] = credential
    return out


async def pull_image(
    ctl: Controller, *, project: str, reference: str, credential: Credential | None = None
) -> AsyncIterator[TransferProgress]:
    """Progress of a pull, ending with the image as cataloged. Raises before the first event for
    what can be known early (a bad reference, an unknown project, no manifest). ``credential``: a
    login for the image's registry for this pull only (Docker's ``X-Registry-Auth``)."""
    ref = parse_image_reference(reference, "reference")
    with ctl.sessions() as s:
        require_project(s, project)
        stored = credentials(s, project, box_for(ctl.sessions, ctl.secrets), ref.domain)
        creds = _with_credential(stored, ref.domain, credential)
    agent = ctl.agents.pick()
    async for event in agent.pull_image(str(ref), creds):
        if isinstance(event, Pulled):
            [view] = images.catalog(
                ctl,
                project=project,
                records=[event.record],
                host_id=agent.host_id,
                pulled_as=(ref.repository, event.digest),
            )
            ctl.activity.record("image", "pull", view.id, project, name=str(ref))
            yield TransferProgress(status=f"Downloaded {ref}", image=view, digest=event.digest)
        else:
            yield _progress(event)


async def push_image(
    ctl: Controller, *, project: str, reference: str, credential: Credential | None = None
) -> AsyncIterator[TransferProgress]:
    """Push the project's image named ``reference`` to the registry that name points at (with
    ``credential`` for it, if given, for this push only)."""
    ref = parse_image_reference(reference, "reference")
    if ref.digest:
        raise InvalidInput(f"reference: {reference!r}: push takes a NAME[:TAG], not a digest")
    with ctl.sessions() as s:
        require_project(s, project)
        row, _ = images.resolve(s, project, str(ref))
        hosts = list(s.scalars(select(ImageHostRow.host_id).where(ImageHostRow.image_id == row.id)))
        stored = credentials(s, project, box_for(ctl.sessions, ctl.secrets), ref.domain)
        creds = _with_credential(stored, ref.domain, credential)
    agent = next((ctl.agents.get(h) for h in hosts if h in ctl.agents), None)
    if agent is None:
        raise Conflict(f"image {reference}: no connected host holds its content")
    async for event in agent.push_image(row.id, str(ref), creds):
        if isinstance(event, Pushed):
            with ctl.sessions.begin() as s:
                if s.get(ImageRow, (project, row.id)) is not None:
                    images.record_digest(s, project, ref.repository, event.digest, row.id)
            yield TransferProgress(
                status=f"{ref.tag}: digest: {event.digest} size: {event.size}", digest=event.digest
            )
        else:
            yield _progress(event)


async def login(
    ctl: Controller, *, project: str, registry: str, username: str, password: str
) -> RegistryLoginView:
    """Check the login against the registry, then keep it for the project (replacing an older one)."""
    host = normalize_registry(registry)
    with ctl.sessions() as s:
        require_project(s, project)
    cred = Credential(username, password)
    await ctl.agents.pick().registry_login(host, cred)
    sealed = box_for(ctl.sessions, ctl.secrets).seal(password)
    with ctl.sessions.begin() as s:
        row = s.get(RegistryCredentialRow, (project, host))
        if row is None:
            row = RegistryCredentialRow(project=project, host=host, username=username, secret=sealed)
            s.add(row)
        row.username, row.secret, row.created_at = username, sealed, now_iso()
        return RegistryLoginView(registry=host, username=username, created_at=row.created_at)


def logout(ctl: Controller, *, project: str, registry: str) -> None:
    host = normalize_registry(registry)
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = s.get(RegistryCredentialRow, (project, host))
        if row is None:
            raise NotFound(f"not logged in to {host} in project {project!r}")
        s.delete(row)


def list_logins(ctl: Controller, *, project: str) -> list[RegistryLoginView]:
    with ctl.sessions() as s:
        require_project(s, project)
        rows = s.scalars(
            select(RegistryCredentialRow)
            .where(RegistryCredentialRow.project == project)
            .order_by(RegistryCredentialRow.host)
        )
        return [
            RegistryLoginView(registry=r.host, username=r.username, created_at=r.created_at) for r in rows
        ]
