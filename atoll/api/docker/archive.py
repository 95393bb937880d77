"""Container files through the Docker API: ``HEAD``/``GET``/``PUT /containers/{id}/archive`` (``docker
cp`` both ways), ``GET /containers/{id}/export``, ``GET /containers/{id}/changes`` (``docker diff``),
and ``SizeRw``/``SizeRootFs`` for ``size=1``.

The host does the work on the instance's merged root filesystem, running or stopped
(``atoll/agent/rootfiles.py``). ``X-Docker-Container-Path-Stat`` is base64 of the JSON stat Docker
sends (``name``, ``size``, ``mode`` as Go's ``os.FileMode``, ``mtime``, ``linkTarget``); the CLI reads
it to decide whether a destination is a directory.
"""

from __future__ import annotations

import base64
import json

from atoll.api.docker.containers import Containers
from atoll.api.docker.http import DockerError, Empty, Json, Request, Stream, bad_request
from atoll.api.docker.images import PROJECT
from atoll.api.docker.router import Route
from atoll.model.errors import NotFound
from atoll.model.rootfiles import PathStat
from atoll.schemas import Instance
from atoll.services import rootfiles

STAT_HEADER = "X-Docker-Container-Path-Stat"


def stat_header(st: PathStat) -> tuple[str, str]:
    doc = {"name": st.name, "size": st.size, "mode": st.mode, "mtime": st.mtime, "linkTarget": st.link_target}
    return STAT_HEADER, base64.b64encode(json.dumps(doc).encode()).decode()


class Archive:
    def __init__(self, containers: Containers) -> None:
        self.containers = containers
        self.ctl = containers.ctl

    def _path(self, req: Request) -> str:
        path = req.arg("path")
        if not path:
            raise bad_request("path: a path in the container is required")
        if not path.startswith("/"):
            path = "/" + path  # Docker takes it relative to the root
        return path

    async def _stat(self, inst: Instance, path: str) -> PathStat:
        try:
            return await rootfiles.path_stat(self.ctl, project=PROJECT, ref=inst.id, path=path)
        except NotFound:
            raise DockerError(404, f"Could not find the file {path} in container {inst.name}") from None

    async def head(self, req: Request) -> Empty:
        inst = self.containers.get(req.params["id"])
        st = await self._stat(inst, self._path(req))
        return Empty(status=200, headers=[stat_header(st)])

    async def get(self, req: Request) -> Stream:
        inst = self.containers.get(req.params["id"])
        path = self._path(req)
        st = await self._stat(inst, path)
        chunks = await rootfiles.archive(self.ctl, project=PROJECT, ref=inst.id, path=path)
        return Stream(chunks, content_type="application/x-tar", headers=[stat_header(st)])

    async def put(self, req: Request) -> Empty:
        inst = self.containers.get(req.params["id"])
        path = self._path(req)
        req.flag("noOverwriteDirNonDir")  # validated; the extractor replaces an entry of any kind
        req.flag("copyUIDGID")  # validated; ownership always comes from the archive (docker cp -a)
        archive = await req.nonempty_chunks("a tar archive")
        try:
            await rootfiles.extract(self.ctl, project=PROJECT, ref=inst.id, path=path, archive=archive)
        except NotFound:
            raise DockerError(404, f"Could not find the file {path} in container {inst.name}") from None
        return Empty(status=200)

    async def export(self, req: Request) -> Stream:
        inst = self.containers.get(req.params["id"])
        chunks = await rootfiles.export(self.ctl, project=PROJECT, ref=inst.id)
        return Stream(chunks, content_type="application/x-tar")

    async def changes(self, req: Request) -> Json:
        inst = self.containers.get(req.params["id"])
        found = await rootfiles.changes(self.ctl, project=PROJECT, ref=inst.id)
        return Json([{"Path": c.path, "Kind": int(c.kind)} for c in found])

    def routes(self) -> list[Route]:
        return [
            Route("HEAD", "/containers/{id}/archive", self.head),
            Route("GET", "/containers/{id}/archive", self.get),
            Route("PUT", "/containers/{id}/archive", self.put, streamed_body=True),
            Route("GET", "/containers/{id}/export", self.export),
            Route("GET", "/containers/{id}/changes", self.changes),
        ]
