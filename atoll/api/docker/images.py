"""Image endpoints: list, inspect, tag, remove, pull (``POST /images/create``), push, login (``/auth``);
build is refused.

Pull streams Docker's JSON progress lines (``{"status", "id", "progressDetail"}``), which the CLI
renders as its per-layer bars; a failure after the first line ends the stream with ``{"error",
"errorDetail"}`` as dockerd does. Names without a registry are Docker Hub's, as everywhere in Atoll.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from atoll.api.docker.http import DockerError, Json, Request, Stream, bad_request
from atoll.api.docker.regauth import request_credential
from atoll.api.docker.router import Route
from atoll.api.docker.views import unix_time
from atoll.model.errors import AtollError, Conflict, NotFound, RegistryAuthError
from atoll.schemas import Image, TransferProgress
from atoll.services import images, prune, registry
from atoll.services.context import Controller

PROJECT = "default"
LIST_FILTERS = {"dangling", "reference", "label"}


def _config(image: Image) -> dict[str, Any]:
    c = image.config
    return {
        "Env": c.env,
        "Cmd": c.cmd,
        "Entrypoint": c.entrypoint,
        "WorkingDir": c.working_dir,
        "User": c.user,
        "Labels": c.labels or None,
        "StopSignal": c.stop_signal or None,
        "ExposedPorts": {p: {} for p in c.exposed_ports} or None,
        "Volumes": None,
        "OnBuild": None,
    }


def summary(image: Image) -> dict[str, Any]:
    return {
        "Id": image.id,
        "ParentId": "",
        "RepoTags": image.repo_tags,
        "RepoDigests": [],
        "Created": unix_time(image.created),
        "Size": image.size,
        "SharedSize": -1,
        "VirtualSize": image.size,
        "Labels": image.config.labels or {},
        "Containers": -1,
    }


def inspect(image: Image) -> dict[str, Any]:
    return {
        "Id": image.id,
        "RepoTags": image.repo_tags,
        "RepoDigests": [],
        "Parent": "",
        "Comment": "",
        "Created": image.created,
        "DockerVersion": "",
        "Author": "",
        "Config": _config(image),
        "Architecture": image.architecture,
        "Os": image.os,
        "Size": image.size,
        "VirtualSize": image.size,
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "RootFS": {"Type": "layers", "Layers": image.layers},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def _matching_tags(image: Image, patterns: list[str]) -> list[str]:
    """Docker's ``reference`` filter: a glob against ``repo:tag``, or against ``repo`` alone. Like
    dockerd, a matching image is listed with the matching tags only."""
    out = []
    for tag in image.repo_tags:
        repo = tag.rpartition(":")[0] if ":" in tag.rsplit("/", 1)[-1] else tag
        names = [tag, repo, tag.removeprefix("docker.io/library/"), repo.removeprefix("docker.io/library/")]
        if any(fnmatch.fnmatchcase(name, p) for p in patterns for name in names):
            out.append(tag)
    return out


def _label_match(image: Image, wanted: list[str]) -> bool:
    labels = image.config.labels
    for w in wanted:
        key, eq, value = w.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def progress_line(event: TransferProgress) -> dict[str, Any]:
    if event.error is not None:
        return {"errorDetail": {"message": event.error.message}, "error": event.error.message}
    if event.image is not None:
        return {"status": f"Status: {event.status}"}
    line: dict[str, Any] = {"status": event.status}
    if event.id:
        line["id"] = event.id
    if event.current is not None or event.total is not None:
        line["progressDetail"] = {"current": event.current or 0, "total": event.total or 0}
    return line


class Images:
    def __init__(self, ctl: Controller, import_rootfs: Callable[[Request], Awaitable[Stream]]) -> None:
        self.ctl = ctl
        self.import_rootfs = import_rootfs
        """`docker import` shares `POST /images/create` with pull (`fromSrc` instead of `fromImage`)."""

    def get(self, ref: str) -> Image:
        try:
            return images.get_image(self.ctl, project=PROJECT, ref=ref)
        except NotFound:
            raise DockerError(404, f"No such image: {ref}") from None

    async def list_(self, req: Request) -> Json:
        filters = req.filters()
        unknown = set(filters) - LIST_FILTERS
        if unknown:
            raise bad_request(f"invalid filter '{sorted(unknown)[0]}'")
        # Atoll has no intermediate build images, so `all` changes nothing: untagged images are listed.
        req.flag("all")
        dangling = filters.get("dangling", [])
        if any(v not in ("true", "false", "1", "0") for v in dangling):
            raise bad_request("invalid filter 'dangling': expected true or false")
        out = []
        for image in images.list_images(self.ctl, project=PROJECT):
            if dangling and (not image.repo_tags) != (dangling[-1] in ("true", "1")):
                continue
            if "reference" in filters:
                tags = _matching_tags(image, filters["reference"])
                if not tags:
                    continue
                image = image.model_copy(update={"repo_tags": tags})
            if "label" in filters and not _label_match(image, filters["label"]):
                continue
            out.append(summary(image))
        return Json(out)

    async def inspect(self, req: Request) -> Json:
        return Json(inspect(self.get(req.params["name"])))

    async def tag(self, req: Request) -> Json:
        source = self.get(req.params["name"])
        repo, tag = req.arg("repo"), req.arg("tag") or "latest"
        if not repo:
            raise bad_request("repo: a repository name is required")
        images.tag_image(self.ctl, project=PROJECT, ref=source.id, tag=f"{repo}:{tag}")
        return Json(None, status=201)

    async def remove(self, req: Request) -> Json:
        name = req.params["name"]
        self.get(name)
        try:
            result = await images.remove_image(self.ctl, project=PROJECT, ref=name, force=req.flag("force"))
        except Conflict as e:
            raise DockerError(409, f"conflict: {e.message}") from None
        return Json([{"Untagged": t} for t in result.untagged] + [{"Deleted": d} for d in result.deleted])

    async def create(self, req: Request) -> Stream:
        if req.arg("fromSrc"):
            return await self.import_rootfs(req)
        name = req.arg("fromImage")
        if not name:
            raise bad_request("fromImage: an image name is required")
        tag = req.arg("tag")
        if tag.startswith("sha256:"):
            reference = f"{name}@{tag}"
        elif tag and ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
            reference = f"{name}:{tag}"
        else:
            reference = name
        platform = req.arg("platform")
        if platform and platform not in ("linux", "linux/amd64", "linux/x86_64"):
            raise bad_request(f"platform: {platform!r} is not supported")
        events = registry.pull_image(
            self.ctl, project=PROJECT, reference=reference, credential=request_credential(req)
        )
        try:
            first = await anext(events)
        except StopAsyncIteration:
            first = None
        except NotFound as e:
            raise DockerError(404, e.message) from None

        label = reference.rsplit("/", 1)[-1]
        opening = {"status": f"Pulling from {name}", "id": label.partition(":")[2] or "latest"}
        return Stream(_progress_lines(opening, first, events))

    async def push(self, req: Request) -> Stream:
        name, tag = req.params["name"], req.arg("tag")
        reference = f"{name}:{tag}" if tag else name
        self.get(reference)
        events = registry.push_image(
            self.ctl, project=PROJECT, reference=reference, credential=request_credential(req)
        )
        try:
            first = await anext(events)
        except StopAsyncIteration:
            first = None

        opening = {"status": f"The push refers to repository [{name}]"}
        return Stream(_progress_lines(opening, first, events))

    async def auth(self, req: Request) -> Json:
        """``docker login``: the login is checked against the registry and kept for the project, so pulls
        and pushes through this listener use it; an X-Registry-Auth header overrides it for one transfer."""
        body = req.json_object()
        username, password = body.get("username") or "", body.get("password") or ""
        if not username or not password:
            raise bad_request("username and password: both are required")
        server = body.get("serveraddress") or "docker.io"
        try:
            await registry.login(
                self.ctl, project=PROJECT, registry=server, username=username, password=password
            )
        except RegistryAuthError as e:
            raise DockerError(401, e.message) from None
        return Json({"Status": "Login Succeeded", "IdentityToken": ""})

    async def prune(self, req: Request) -> Json:
        filters = req.filters()
        unknown = set(filters) - {"dangling"}
        if unknown:
            raise bad_request(f"invalid filter '{sorted(unknown)[0]}': image prune takes only dangling here")
        dangling = filters.get("dangling", ["true"])[-1]
        if dangling not in ("true", "false", "1", "0"):
            raise bad_request(f"invalid filter 'dangling={dangling}'")
        result = await prune.prune_images(self.ctl, project=PROJECT, all=dangling in ("false", "0"))
        deleted = [{"Untagged": t} for t in result.untagged] + [{"Deleted": d} for d in result.deleted]
        return Json({"ImagesDeleted": deleted or None, "SpaceReclaimed": result.reclaimed})

    async def build(self, req: Request) -> Json:
        raise DockerError(501, "docker build is not supported by Atoll yet (import or pull images instead)")

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/images/json", self.list_),
            Route("POST", "/images/create", self.create, streamed_body=True),
            Route("POST", "/images/prune", self.prune),
            Route("POST", "/build", self.build),
            Route("GET", "/images/{name*}/json", self.inspect),
            Route("POST", "/images/{name*}/tag", self.tag),
            Route("POST", "/images/{name*}/push", self.push),
            Route("POST", "/auth", self.auth),
            Route("DELETE", "/images/{name*}", self.remove),
        ]


async def _progress_lines(
    opening: dict[str, str], first: TransferProgress | None, events: AsyncIterator[TransferProgress]
) -> AsyncIterator[bytes]:
    """A pull's or push's JSON lines as dockerd streams them: an opening status, one line per progress
    event, and an error line (not an HTTP error: the 200 has been sent) if the transfer fails midway."""
    yield json.dumps(opening).encode() + b"\r\n"
    try:
        if first is not None:
            yield json.dumps(progress_line(first)).encode() + b"\r\n"
        async for event in events:
            yield json.dumps(progress_line(event)).encode() + b"\r\n"
    except AtollError as e:
        yield json.dumps({"errorDetail": {"message": e.message}, "error": e.message}).encode() + b"\r\n"
