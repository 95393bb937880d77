"""Volume endpoints: create, list, inspect, remove, prune, onto the native volumes (docs/volumes.md).

Docker's volume shape comes straight from the native one; ``Mountpoint`` is empty because the data
lives on whichever host uses the volume (``DATA/volumes/<id>/_data`` there), which the controller
does not know as a path.
"""

from __future__ import annotations

from typing import Any

from atoll.api.docker.http import DockerError, Empty, Json, Request, bad_request
from atoll.api.docker.router import Route
from atoll.model.errors import Conflict, InvalidInput, NotFound
from atoll.schemas import Volume, VolumeCreate
from atoll.services import volumes

PROJECT = "default"
LIST_FILTERS = {"name", "label", "dangling", "driver"}
CREATE_FIELDS = {"Name", "Driver", "DriverOpts", "Labels", "ClusterVolumeSpec"}


def view(vol: Volume) -> dict[str, Any]:
    return {
        "CreatedAt": vol.created_at,
        "Driver": vol.driver,
        "Labels": vol.labels,
        "Mountpoint": "",
        "Name": vol.name,
        "Options": vol.options or None,
        "Scope": "local",
    }


def _dangling(values: list[str]) -> bool | None:
    if not values:
        return None
    wanted = values[-1].lower()
    if wanted not in ("true", "false", "1", "0"):
        raise bad_request(f"invalid filter 'dangling={values[-1]}'")
    return wanted in ("true", "1")


class Volumes:
    def __init__(self, ctl: Any) -> None:
        self.ctl = ctl

    def get(self, name: str) -> Volume:
        try:
            return volumes.get_volume(self.ctl, project=PROJECT, ref=name)
        except NotFound:
            raise DockerError(404, f"get {name}: no such volume") from None

    async def create(self, req: Request) -> Json:
        body = req.json_object()
        for key, value in body.items():
            if key not in CREATE_FIELDS or (key == "ClusterVolumeSpec" and value):
                raise bad_request(f"{key}: not supported by Atoll yet")
        labels = body.get("Labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise bad_request("Labels: expected a map of strings")
        options = body.get("DriverOpts") or {}
        if not isinstance(options, dict) or not all(isinstance(v, str) for v in options.values()):
            raise bad_request("DriverOpts: expected a map of strings")
        try:
            request = VolumeCreate(
                name=body.get("Name") or None,
                driver=body.get("Driver") or "local",
                labels=labels,
                options=options,
            )
        except ValueError:
            raise bad_request(
                f"Name: {body.get('Name')!r} includes invalid characters for a local volume name, "
                'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed'
            ) from None
        try:
            vol = volumes.create_volume(self.ctl, project=PROJECT, request=request)
        except InvalidInput as e:
            raise bad_request(
                e.message.replace("driver", "Driver").replace("options", "DriverOpts")
            ) from None
        except Conflict as e:
            raise DockerError(409, e.message) from None
        return Json(view(vol), status=201)

    async def list_(self, req: Request) -> Json:
        filters = req.filters()
        unknown = set(filters) - LIST_FILTERS
        if unknown:
            raise bad_request(f"invalid filter '{sorted(unknown)[0]}'")
        rows = volumes.list_volumes(
            self.ctl,
            project=PROJECT,
            name=filters.get("name", []),
            label=filters.get("label", []),
            dangling=_dangling(filters.get("dangling", [])),
            driver=filters.get("driver", []),
        )
        return Json({"Volumes": [view(v) for v in rows], "Warnings": None})

    async def inspect(self, req: Request) -> Json:
        return Json(view(self.get(req.params["name"])))

    async def remove(self, req: Request) -> Empty:
        name = req.params["name"]
        try:
            await volumes.remove_volume(self.ctl, project=PROJECT, ref=name)
        except NotFound:
            if req.flag("force"):  # dockerd: force ignores a missing volume
                return Empty()
            raise DockerError(404, f"get {name}: no such volume") from None
        except Conflict as e:
            raise DockerError(409, f"remove {name}: volume is in use - {e.message}") from None
        return Empty()

    async def prune(self, req: Request) -> Json:
        filters = req.filters()
        unknown = set(filters) - {"label", "all"}
        if unknown:
            raise bad_request(f"invalid filter '{sorted(unknown)[0]}'")
        prune_all = any(v.lower() in ("true", "1") for v in filters.get("all", []))
        pruned = await volumes.prune(self.ctl, project=PROJECT, all=prune_all, label=filters.get("label", []))
        return Json({"VolumesDeleted": pruned.deleted, "SpaceReclaimed": 0})

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/volumes/create", self.create),
            Route("GET", "/volumes", self.list_),
            Route("POST", "/volumes/prune", self.prune),
            Route("GET", "/volumes/{name}", self.inspect),
            Route("DELETE", "/volumes/{name}", self.remove),
        ]
