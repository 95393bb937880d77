"""Images as files through the Docker API: save (``GET /images/{name}/get``, ``GET /images/get``), load,
import (``POST /images/create?fromSrc=-``), history, and ``GET /system/df``.

Save streams the archive a host writes from its layer store (``atoll/agent/images/exporter.py``). Load
and import go through the native import and build, so what they make is an ordinary catalogued image.
Import honours the ``changes`` a root filesystem needs to run (``CMD``, ``ENTRYPOINT``, ``ENV``,
``WORKDIR``, ``USER``, ``LABEL``, ``EXPOSE``, ``STOPSIGNAL``) and refuses others with a 400 naming
them.
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from atoll.api.docker.http import DockerError, Json, Request, Stream, bad_request
from atoll.api.docker.images import PROJECT, summary
from atoll.api.docker.router import Route
from atoll.api.docker.views import summary as container_summary
from atoll.api.docker.views import unix_time
from atoll.model.errors import BadImage, NotFound
from atoll.model.image import ImageConfig
from atoll.services import imagefiles, images, instances, volumes
from atoll.services.context import Controller


def _line(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode() + b"\r\n"


def _command(value: str) -> list[str]:
    """Dockerfile's two forms: a JSON array (exec form), or a string run by ``/bin/sh -c``."""
    value = value.strip()
    if value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            return parsed
    return ["/bin/sh", "-c", value]


def _pairs(value: str, what: str) -> dict[str, str]:
    """``KEY=VALUE ...`` or the old ``KEY VALUE`` form of ENV and LABEL."""
    words = shlex.split(value)
    if not words:
        raise bad_request(f"changes: {what} needs a value")
    if "=" not in words[0]:
        key, _, rest = value.strip().partition(" ")
        return {key: rest.strip()}
    out = {}
    for word in words:
        key, eq, val = word.partition("=")
        if not eq or not key:
            raise bad_request(f"changes: {what} {word!r}: expected KEY=VALUE")
        out[key] = val
    return out


def apply_changes(changes: list[str]) -> ImageConfig:
    """The config an imported root filesystem gets from ``docker import --change`` instructions."""
    fields: dict[str, Any] = {"env": [], "labels": {}, "exposed_ports": []}
    for change in changes:
        for line in change.splitlines():
            if not line.strip():
                continue
            word, _, value = line.strip().partition(" ")
            instruction = word.upper()
            if instruction == "CMD":
                fields["cmd"] = _command(value)
            elif instruction == "ENTRYPOINT":
                fields["entrypoint"] = _command(value)
            elif instruction == "ENV":
                fields["env"] += [f"{k}={v}" for k, v in _pairs(value, "ENV").items()]
            elif instruction == "LABEL":
                fields["labels"].update(_pairs(value, "LABEL"))
            elif instruction == "WORKDIR":
                fields["working_dir"] = value.strip()
            elif instruction == "USER":
                fields["user"] = value.strip()
            elif instruction == "STOPSIGNAL":
                fields["stop_signal"] = value.strip()
            elif instruction == "EXPOSE":
                for port in value.split():
                    fields["exposed_ports"].append(port if "/" in port else f"{port}/tcp")
            else:
                raise bad_request(f"changes: {word} is not supported by docker import on Atoll")
    return ImageConfig(**fields)


class ImageFiles:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl

    async def _save(self, refs: list[str]) -> Stream:
        if not refs:
            raise bad_request("names: at least one image name is required")
        for ref in refs:
            try:
                images.get_image(self.ctl, project=PROJECT, ref=ref)
            except NotFound:
                raise DockerError(404, f"No such image: {ref}") from None
        chunks = await imagefiles.save_images(self.ctl, project=PROJECT, refs=refs)
        return Stream(chunks, content_type="application/x-tar")

    async def get_one(self, req: Request) -> Stream:
        return await self._save([req.params["name"]])

    async def get_many(self, req: Request) -> Stream:
        return await self._save(req.query.get("names", []))

    async def load(self, req: Request) -> Stream:
        req.flag("quiet")  # the same lines either way: there is no progress to draw for a local file
        chunks = await req.nonempty_chunks("an image archive (docker save or OCI layout tar)")
        try:
            loaded = await images.import_images_with_names(self.ctl, project=PROJECT, chunks=chunks)
        except BadImage as e:
            # As dockerd: the answer is 200 and the stream carries the error, which clients report
            # (the CLI as its error, docker-py as ImageLoadError).
            message = e.message

            async def failed() -> AsyncIterator[bytes]:
                yield _line({"errorDetail": {"message": message}, "error": message})

            return Stream(failed())

        async def lines() -> AsyncIterator[bytes]:
            for image, tags in loaded:
                if tags:
                    for tag in tags:
                        yield _line({"stream": f"Loaded image: {tag}\n"})
                else:
                    yield _line({"stream": f"Loaded image ID: {image.id}\n"})

        return Stream(lines())

    async def import_rootfs(self, req: Request) -> Stream:
        """``docker import``: the body is a root filesystem tar (``fromSrc=-``)."""
        if req.arg("fromSrc") != "-":
            raise bad_request("fromSrc: only '-' (the tar in the request body) is supported")
        platform = req.arg("platform")
        if platform and platform not in ("linux", "linux/amd64", "linux/x86_64"):
            raise bad_request(f"platform: {platform!r} is not supported")
        if req.arg("message"):
            raise bad_request("message: a commit message on import is not supported by Atoll yet")
        config = apply_changes(req.query.get("changes", []))
        repo, tag = req.arg("repo"), req.arg("tag")
        name = f"{repo}:{tag}" if repo and tag else repo or None
        chunks = await req.nonempty_chunks("a root filesystem tar")
        try:
            image = await images.build_image(
                self.ctl, project=PROJECT, chunks=chunks, tag=name, config=config
            )
        except BadImage as e:
            raise bad_request(e.message) from None

        async def lines() -> AsyncIterator[bytes]:
            yield _line({"status": image.id})

        return Stream(lines())

    async def history(self, req: Request) -> Json:
        """One row per step of the image's config history, newest first; the newest carries the
        image's id and tags, older ones ``<missing>`` (as for pulled images in Docker)."""
        name = req.params["name"]
        try:
            image = images.get_image(self.ctl, project=PROJECT, ref=name)
        except NotFound:
            raise DockerError(404, f"No such image: {name}") from None
        steps = await imagefiles.history(self.ctl, project=PROJECT, ref=image.id)
        rows = []
        for i, step in enumerate(reversed(steps)):
            top = i == 0
            rows.append(
                {
                    "Id": image.id if top else "<missing>",
                    "Created": unix_time(step.created) if step.created else 0,
                    "CreatedBy": step.created_by,
                    "Tags": image.repo_tags if top else None,
                    "Size": step.size,
                    "Comment": step.comment,
                }
            )
        return Json(rows)

    async def disk_usage(self, req: Request) -> Json:
        kinds = set(req.query.get("type", [])) or {"image", "container", "volume", "build-cache"}
        unknown = kinds - {"image", "container", "volume", "build-cache"}
        if unknown:
            kind = sorted(unknown)[0]
            raise bad_request(f"type: {kind!r} is not one of image, container, volume, build-cache")
        body: dict[str, Any] = {}
        insts = instances.list_instances(self.ctl, project=PROJECT, all=True)
        if "image" in kinds:
            listed = images.list_images(self.ctl, project=PROJECT)
            sizes = await imagefiles.layer_sizes(self.ctl, image_ids=[i.id for i in listed])
            users = Counter(layer for i in listed for layer in set(i.layers))
            out = []
            for image in listed:
                row = summary(image)
                row["Containers"] = sum(1 for inst in insts if inst.image_id == image.id)
                # The bytes of the layers another listed image uses too (each layer counted once).
                row["SharedSize"] = sum(sizes.get(d, 0) for d in set(image.layers) if users[d] > 1)
                out.append(row)
            body["Images"] = out
            body["LayersSize"] = sum(sizes.values())  # every layer once, however many images use it
        if "container" in kinds:
            body["Containers"] = [container_summary(inst) for inst in insts]
        if "volume" in kinds:
            vols = volumes.list_volumes(self.ctl, project=PROJECT)
            body["Volumes"] = [
                {
                    "Name": v.name,
                    "Driver": v.driver,
                    "Mountpoint": "",
                    "Labels": v.labels or None,
                    "Scope": "local",
                    "Options": v.options or None,
                    "CreatedAt": v.created_at,
                    "UsageData": {"Size": -1, "RefCount": len(v.used_by)},
                }
                for v in vols
            ]
        if "build-cache" in kinds:
            body["BuildCache"] = []  # Atoll has no builder, so no build cache
        return Json(body)

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/images/get", self.get_many),
            Route("POST", "/images/load", self.load, streamed_body=True),
            Route("GET", "/system/df", self.disk_usage),
            Route("GET", "/images/{name*}/history", self.history),
            Route("GET", "/images/{name*}/get", self.get_one),
        ]
