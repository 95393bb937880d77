"""``GET /events``: the activity log as Docker's event stream, with since, until and filters.

With ``since`` the kept entries from then on are replayed first; the stream then follows live entries
until ``until`` (if given) passes, or the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from atoll.api.docker.attach import unix_or_iso
from atoll.api.docker.http import Request, Stream, bad_request
from atoll.api.docker.router import Route
from atoll.services.activity import Activity
from atoll.services.context import Controller

PROJECT = "default"
FILTERS = {"type", "event", "container", "image", "label", "network", "volume", "scope"}
TYPES = {"container", "image", "network", "volume", "daemon", "plugin", "service", "node", "secret", "config"}


def actor(e: Activity) -> tuple[str, dict[str, str]]:
    """Docker's actor: a volume is known by its name (and its events carry only the driver); networks
    carry ``name`` and ``type`` (the driver), and ``container`` for connect/disconnect, as dockerd's."""
    if e.type == "volume":
        attributes = {k: v for k, v in e.attributes.items() if k != "name"}
        return e.attributes.get("name", e.id), attributes
    return e.id, e.attributes


def event_json(e: Activity) -> dict[str, Any]:
    actor_id, attributes = actor(e)
    out: dict[str, Any] = {
        "Type": e.type,
        "Action": e.action,
        "Actor": {"ID": actor_id, "Attributes": attributes},
        "scope": "local",
        "time": e.time_ns // 1_000_000_000,
        "timeNano": e.time_ns,
    }
    if e.type == "container":  # the pre-1.22 fields the CLI still prints
        out.update(
            status=e.action, id=e.id, **({"from": e.attributes["image"]} if "image" in e.attributes else {})
        )
    elif e.type == "image":  # dockerd fills these for images too
        out.update(status=e.action, id=e.id)
    return out


def _named(e: Activity, values: list[str]) -> bool:
    """dockerd's fuzzy match of a network or volume filter: the actor's id or name, or a prefix of it."""
    actor_id, _ = actor(e)
    names = {actor_id, e.id, e.attributes.get("name", "")}
    return any(v and any(n == v or n.startswith(v) for n in names if n) for v in values)


def matches(e: Activity, filters: dict[str, list[str]]) -> bool:
    if e.project != PROJECT:
        return False
    if "type" in filters and e.type not in filters["type"]:
        return False
    if "event" in filters and e.action not in filters["event"]:
        return False
    if "network" in filters and (e.type != "network" or not _named(e, filters["network"])):
        return False
    if "volume" in filters and (e.type != "volume" or not _named(e, filters["volume"])):
        return False
    if "scope" in filters and "local" not in filters["scope"]:
        return False
    if "container" in filters and (
        e.type != "container"
        or not any(v in (e.attributes.get("name"), e.id) or e.id.startswith(v) for v in filters["container"])
    ):
        return False
    if "image" in filters:
        names = (
            {e.attributes.get("image"), e.attributes.get("name")}
            if e.type == "image"
            else {e.attributes.get("image")}
        )
        if e.type == "image":
            names.add(e.id)
        if not any(v in names for v in filters["image"]):
            return False
    if "label" in filters:
        for w in filters["label"]:
            key, eq, value = w.partition("=")
            if key not in e.attributes or (eq and e.attributes[key] != value):
                return False
    return True


class Events:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl

    async def events(self, req: Request) -> Stream:
        filters = req.filters()
        unknown = set(filters) - FILTERS
        if unknown:
            raise bad_request(f"invalid filter '{sorted(unknown)[0]}'")
        for t in filters.get("type", []):
            if t not in TYPES:
                raise bad_request(f"invalid filter 'type={t}'")
        since = unix_or_iso(req.arg("since"), "since")
        until = unix_or_iso(req.arg("until"), "until")
        until_ns = int(until * 1e9) if until is not None else None
        log = self.ctl.activity
        listener = log.listen()
        queue = await listener.__aenter__()
        kept = log.kept(int(since * 1e9)) if since is not None else []

        def line(e: Activity) -> bytes:
            return json.dumps(event_json(e)).encode() + b"\n"

        async def body() -> AsyncIterator[bytes]:
            try:
                for e in kept:
                    if until_ns is not None and e.time_ns > until_ns:
                        return
                    if matches(e, filters):
                        yield line(e)
                while True:
                    timeout = None if until_ns is None else max(0.0, until_ns / 1e9 - time.time())
                    if timeout == 0.0:
                        return
                    try:
                        e = await asyncio.wait_for(queue.get(), timeout)
                    except TimeoutError:
                        return
                    if until_ns is not None and e.time_ns > until_ns:
                        return
                    if matches(e, filters):
                        yield line(e)
            finally:
                with contextlib.suppress(Exception):
                    await listener.__aexit__(None, None, None)

        return Stream(body())

    def routes(self) -> list[Route]:
        return [Route("GET", "/events", self.events)]
