"""Container endpoints: create, inspect, list, the lifecycle verbs, rename, prune.

Each handler resolves the container first, so a bad reference is Docker's 404 "No such container",
then calls one native service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from atoll.api.docker.create import docker_field_names, instance_create
from atoll.api.docker.http import DockerError, Empty, EncodedJson, Json, Request, Stream, bad_request
from atoll.api.docker.networks import DEFAULT_NETWORK, ensure_default_network
from atoll.api.docker.router import Route, version_tuple
from atoll.api.docker.sizes import sizes
from atoll.api.docker.views import inspect, summary, unix_time
from atoll.api.offload import dumps_list, off_loop
from atoll.model.errors import AtollError, Conflict, InvalidInput, NotFound
from atoll.schemas import Instance
from atoll.services import images, instances, lifecycle, networks, operate, rename, rootfiles
from atoll.services.context import Controller
from atoll.services.lifecycle import WaitCondition

PROJECT = "default"
LIST_FILTERS = {"label", "name", "status", "id", "ancestor", "exited"}
DOCKER_STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}


def _legacy_aliases(body: dict[str, Any], inst: Instance) -> None:
    """Before API 1.45 dockerd listed the container's short id among its aliases on user networks
    (1.45 moved it to ``DNSNames``). Compose 1.x looks for it: without it, Compose disconnects and
    reconnects every service to apply its aliases."""
    for name, endpoint in (body["NetworkSettings"]["Networks"] or {}).items():
        if name != DEFAULT_NETWORK:
            endpoint["Aliases"] = [*(endpoint["Aliases"] or []), inst.id[:12]]


class Containers:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl

    def get(self, ref: str) -> Instance:
        try:
            return instances.get(self.ctl, project=PROJECT, ref=ref)
        except NotFound:
            raise DockerError(404, f"No such container: {ref}") from None

    def network_names(self) -> dict[str, str]:
        return {n.id: n.name for n in networks.list_networks(self.ctl, project=PROJECT)}

    # -- create, inspect, list -----------------------------------------------------------------

    async def create(self, req: Request) -> Json:
        body = req.json_object()
        request = instance_create(body, req.arg("name"))
        platform = req.arg("platform")
        if platform and platform not in ("linux", "linux/amd64", "linux/x86_64"):
            raise bad_request(f"platform: {platform!r} is not supported")
        try:  # (the CLI pulls on this 404; the lookups are existence checks, no views built)
            images.image_id(self.ctl, project=PROJECT, ref=request.image)
        except NotFound:
            raise DockerError(404, f"No such image: {request.image}") from None
        if any(n.network == DEFAULT_NETWORK for n in request.networks):
            await ensure_default_network(self.ctl)
        try:
            inst = await instances.create(self.ctl, project=PROJECT, request=request)
        except InvalidInput as e:
            raise bad_request(docker_field_names(e.message)) from None
        return Json({"Id": inst.id, "Warnings": []}, status=201)

    async def inspect(self, req: Request) -> Json:
        inst = self.get(req.params["id"])
        body = inspect(inst, self.network_names())
        if req.api_version and version_tuple(req.api_version) < (1, 45):
            _legacy_aliases(body, inst)
        if req.flag("size"):
            body.update(await sizes(self.ctl, inst))
        return Json(body)

    async def list_(self, req: Request) -> EncodedJson:
        filters = req.filters()
        unknown = set(filters) - LIST_FILTERS
        if unknown:
            raise bad_request(f"invalid filter '{sorted(unknown)[0]}'")
        for status in filters.get("status", []):
            if status not in DOCKER_STATUSES:
                raise bad_request(f"invalid filter 'status={status}'")
        limit = req.int_arg("limit", -1) or -1
        show_all = req.flag("all") or limit > 0 or bool(filters.get("status")) or bool(filters.get("exited"))
        exited = {_int_filter(v, "exited") for v in filters.get("exited", [])}

        def listed() -> Iterator[Instance]:
            """The rows to show, in order, read a batch at a time (only a batch is alive at once: the
            collector stays quick, ``instances.LIST_BATCH``)."""
            # Images named by ``ancestor`` are looked up once, not per row (and not inside the read).
            ancestors = {ref: self._image_id(ref) for ref in filters.get("ancestor", [])}
            taken = 0
            batches = instances.instance_batches(
                self.ctl, project=PROJECT, all=True, label=filters.get("label")
            )
            with contextlib.closing(batches):
                for batch in batches:
                    for inst in batch:
                        if limit > 0 and taken >= limit:
                            return
                        if not show_all and inst.status not in ("running", "restarting"):
                            continue
                        if self._match(inst, filters, exited, ancestors):
                            taken += 1
                            yield inst

        # Thousands of rows take seconds to read, view and write as JSON: all of it off the event loop
        # (atoll/api/offload.py), the JSON a row at a time, the same bytes as ``Json`` would send.
        names = await off_loop(self.network_names)
        if not req.flag("size"):
            return EncodedJson(await off_loop(lambda: dumps_list(summary(i, names) for i in listed())))
        rows = await off_loop(lambda: [(summary(i, names), i) for i in listed()])
        out = [row for row, _ in rows]
        for row, inst in rows:
            row.update(await sizes(self.ctl, inst))
        return EncodedJson(await off_loop(dumps_list, out))

    def _match(
        self,
        inst: Instance,
        filters: dict[str, list[str]],
        exited: set[int],
        ancestors: dict[str, str | None],
    ) -> bool:
        if "status" in filters and inst.status not in filters["status"]:
            return False
        if "id" in filters and not any(inst.id.startswith(v) for v in filters["id"]):
            return False
        if "name" in filters and not any(_name_match(v, inst.name) for v in filters["name"]):
            return False
        if exited and (inst.status != "exited" or inst.exit_code not in exited):
            return False
        return not ancestors or any(_ancestor(inst, ref, image) for ref, image in ancestors.items())

    def _image_id(self, ref: str) -> str | None:
        try:
            return images.get_image(self.ctl, project=PROJECT, ref=ref).id
        except NotFound:
            return None

    # -- lifecycle ------------------------------------------------------------------------------

    async def _thaw(self, inst: Instance) -> None:
        """A paused container is unpaused before it is stopped, killed or removed (a frozen process
        cannot act on a signal), as dockerd does."""
        if inst.paused:
            with contextlib.suppress(Conflict):
                await operate.unpause(self.ctl, project=PROJECT, ref=inst.id)

    async def start(self, req: Request) -> Empty:
        inst = self.get(req.params["id"])
        if inst.status == "running":
            return Empty(304)
        try:
            await lifecycle.start(self.ctl, project=PROJECT, ref=inst.id)
        except Exception:
            # As dockerd: a container that was to be removed on exit is removed when it cannot start
            # (the CLI waits for that removal before it reports the error).
            if inst.auto_remove:
                with contextlib.suppress(Exception):
                    await instances.remove(self.ctl, project=PROJECT, ref=inst.id, force=True)
            raise
        return Empty(204)

    def _timeout(self, req: Request) -> float | None:
        t = req.int_arg("t") if "t" in req.query else req.int_arg("timeout")
        return None if t is None else (max(t, 0) if t >= 0 else 3600.0 * 24)

    async def stop(self, req: Request) -> Empty:
        inst = self.get(req.params["id"])
        if inst.status not in ("running", "restarting"):
            return Empty(304)
        await self._thaw(inst)
        await lifecycle.stop(self.ctl, project=PROJECT, ref=inst.id, timeout=self._timeout(req))
        return Empty(204)

    async def restart(self, req: Request) -> Empty:
        inst = self.get(req.params["id"])
        await self._thaw(inst)
        await lifecycle.restart(self.ctl, project=PROJECT, ref=inst.id, timeout=self._timeout(req))
        return Empty(204)

    async def kill(self, req: Request) -> Empty:
        inst = self.get(req.params["id"])
        if inst.status != "running":
            raise DockerError(
                409, f"Cannot kill container: {req.params['id']}: container {inst.id} is not running"
            )
        await self._thaw(inst)
        await lifecycle.kill(self.ctl, project=PROJECT, ref=inst.id, signal=req.arg("signal") or "SIGKILL")
        return Empty(204)

    async def wait(self, req: Request) -> Stream:
        """Headers go out at once, the body when the condition is met: the CLI sends this before it
        starts the container and blocks on the headers, so the wait must be registered first."""
        inst = self.get(req.params["id"])
        condition = req.arg("condition") or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise bad_request(f"condition: invalid condition {condition!r}")
        cond: WaitCondition = condition  # type: ignore[assignment]
        active = ("running", "restarting")
        if cond == "not-running" and inst.status in active:
            # dockerd wakes "not-running" waiters at every exit, also one its restart policy follows.
            cond = "next-exit"
        task = asyncio.ensure_future(lifecycle.wait(self.ctl, project=PROJECT, ref=inst.id, condition=cond))
        await asyncio.sleep(0)  # let it subscribe before the client hears back
        if cond != condition and self.get(inst.id).status not in active:
            # It ended before the subscription: that exit is not "next" any more.
            task.cancel()
            task = asyncio.ensure_future(
                lifecycle.wait(self.ctl, project=PROJECT, ref=inst.id, condition="not-running")
            )
            await asyncio.sleep(0)

        async def body() -> AsyncIterator[bytes]:
            try:
                result = await task
            except NotFound:
                yield json.dumps({"StatusCode": 0, "Error": None}).encode() + b"\n"
                return
            finally:
                task.cancel()
            error = {"Message": result.error} if result.error else None
            yield json.dumps({"StatusCode": result.exit_code, "Error": error}).encode() + b"\n"

        return Stream(body())

    async def remove(self, req: Request) -> Empty:
        inst = self.get(req.params["id"])
        if req.flag("link"):
            raise bad_request("link: links are not supported by Atoll")
        force = req.flag("force")
        if inst.status in ("running", "restarting") and not force:
            raise DockerError(
                409,
                f'cannot remove container "/{inst.name}": container is running: '
                "stop the container before removing or force remove",
            )
        if force:
            await self._thaw(inst)
        await instances.remove(self.ctl, project=PROJECT, ref=inst.id, force=force)
        return Empty(204)

    async def rename(self, req: Request) -> Empty:
        inst = self.get(req.params["id"])
        name = req.arg("name").removeprefix("/")
        if not name:
            raise bad_request("name: a new name is required")
        await rename.rename_and_announce(self.ctl, project=PROJECT, ref=inst.id, name=name)
        return Empty(204)

    async def prune(self, req: Request) -> Json:
        filters = req.filters()
        unknown = set(filters) - {"label", "until"}
        if unknown:
            raise bad_request(f"invalid filter '{sorted(unknown)[0]}'")
        until = [_until(v) for v in filters.get("until", [])]
        deleted, reclaimed = [], 0
        for inst in instances.list_instances(self.ctl, project=PROJECT, all=True, label=filters.get("label")):
            if inst.status not in ("exited", "created", "dead"):
                continue
            if until and unix_time(inst.created_at) >= min(until):
                continue
            try:
                # What the writable layer held is what its removal gives back, as dockerd counts it.
                size = await rootfiles.size_rw(self.ctl, project=PROJECT, ref=inst.id)
            except AtollError:
                size = 0
            try:
                await instances.remove(self.ctl, project=PROJECT, ref=inst.id)
            except NotFound:
                continue
            deleted.append(inst.id)
            reclaimed += size
        return Json({"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed})

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/containers/create", self.create),
            Route("GET", "/containers/json", self.list_),
            Route("POST", "/containers/prune", self.prune),
            Route("GET", "/containers/{id}/json", self.inspect),
            Route("POST", "/containers/{id}/start", self.start),
            Route("POST", "/containers/{id}/stop", self.stop),
            Route("POST", "/containers/{id}/restart", self.restart),
            Route("POST", "/containers/{id}/kill", self.kill),
            Route("POST", "/containers/{id}/wait", self.wait),
            Route("POST", "/containers/{id}/rename", self.rename),
            Route("DELETE", "/containers/{id}", self.remove),
        ]


def _ancestor(inst: Instance, ref: str, image_id: str | None) -> bool:
    """``ancestor=ref``: the image the container was made from, by name or id (or a prefix of it), or
    the image ``ref`` names now (``image_id``)."""
    if inst.image == ref or inst.image_id == ref or inst.image_id.removeprefix("sha256:").startswith(ref):
        return True
    return image_id is not None and image_id == inst.image_id


def _name_match(pattern: str, name: str) -> bool:
    """Docker matches name filters as regular expressions against "/name"."""
    try:
        return re.search(pattern, "/" + name) is not None
    except re.error:
        raise bad_request(f"invalid filter 'name={pattern}': not a regular expression") from None


def _int_filter(value: str, key: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"invalid filter '{key}={value}'") from None


def _until(value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise bad_request(f"invalid filter 'until={value}': expected a unix timestamp") from None
