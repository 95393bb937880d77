"""``POST /networks/{id}/connect`` and ``/disconnect``: Docker's hot-plug onto the native one
(services/nics.py): a container (created, running or stopped) gets, or loses, a NIC on the network.

Connect's ``EndpointConfig`` takes ``Aliases``, ``IPAMConfig.IPv4Address`` and ``MacAddress``; ids and
names Docker fills in itself (``NetworkID``, ``EndpointID``, ``DNSNames``) are ignored; anything else
at a non-zero value is a 400 naming it (``EndpointConfig.Links``, IPv6). Disconnect takes ``Force``
(the NIC goes whatever the container does, as it always does here).

The predefined ``none`` and ``host`` networks cannot be joined or left. A running container that was
started without any network has no namespace of its own to plug a NIC into (dockerd refuses a
container in ``none`` mode the same way): 409, stop it first.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from atoll.api.docker.http import DockerError, Empty, Request, bad_request
from atoll.api.docker.networks import (
    DEFAULT_NETWORK,
    PROJECT,
    SPECIAL,
    Networks,
    ready_default_network,
    special_id,
)
from atoll.api.docker.router import Route
from atoll.model.errors import NotFound
from atoll.schemas import Instance, InstanceNetwork
from atoll.services import instances, nics
from atoll.services.context import Controller

IGNORED = {"NetworkID", "EndpointID", "DNSNames"}
"""Set by clients that echo an inspect back; the values are Docker's to choose, and Atoll's here."""
ZERO_ONLY = {
    "Links", "DriverOpts", "GwPriority", "Gateway", "IPAddress", "IPPrefixLen",
    "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen",
}  # fmt: skip


def endpoint_request(network_id: str, raw: Any) -> InstanceNetwork:
    """The native request for a connect's ``EndpointConfig``; 400 naming the field it cannot honour."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise bad_request("EndpointConfig: expected an object")
    for key, value in raw.items():
        if key in IGNORED or key in ("IPAMConfig", "Aliases", "MacAddress"):
            continue
        if key not in ZERO_ONLY:
            raise bad_request(f"EndpointConfig.{key}: unknown field")
        if value:
            raise bad_request(f"EndpointConfig.{key}: not supported by Atoll yet (got {value!r})")
    ipam = raw.get("IPAMConfig") or {}
    if not isinstance(ipam, dict):
        raise bad_request("EndpointConfig.IPAMConfig: expected an object")
    for key, value in ipam.items():
        if key != "IPv4Address" and value:
            raise bad_request(f"EndpointConfig.IPAMConfig.{key}: not supported by Atoll yet")
    aliases = raw.get("Aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise bad_request("EndpointConfig.Aliases: expected a list of strings")
    try:
        return InstanceNetwork(
            network=network_id,
            ip=ipam.get("IPv4Address") or None,
            aliases=aliases,
            mac=raw.get("MacAddress") or None,
        )
    except ValidationError as e:
        err = e.errors()[0]
        raise bad_request(f"EndpointConfig.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None


class NetworkConnect:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.networks = Networks(ctl)

    def _container(self, body: dict[str, Any]) -> Instance:
        ref = body.get("Container")
        if not ref or not isinstance(ref, str):
            raise bad_request("Container: a container name or id is required")
        try:
            return instances.get(self.ctl, project=PROJECT, ref=ref)
        except NotFound:
            raise DockerError(404, f"No such container: {ref}") from None

    async def _network_id(self, ref: str, verb: str) -> str:
        if ref in SPECIAL or (len(ref) >= 3 and any(special_id(n).startswith(ref) for n in SPECIAL)):
            raise DockerError(403, f"container cannot be {verb} the predefined network {ref}")
        if ref == DEFAULT_NETWORK:
            return (await ready_default_network(self.ctl)).id
        return self.networks.get(ref).id

    async def connect(self, req: Request) -> Empty:
        body = req.json_object()
        network_id = await self._network_id(req.params["id"], "connected to")
        inst = self._container(body)
        request = endpoint_request(network_id, body.get("EndpointConfig"))
        await nics.connect(self.ctl, project=PROJECT, ref=inst.id, request=request)
        return Empty(status=200)

    async def disconnect(self, req: Request) -> Empty:
        body = req.json_object()
        network_id = await self._network_id(req.params["id"], "disconnected from")
        force = body.get("Force", False)
        if not isinstance(force, bool):
            raise bad_request("Force: expected a boolean")
        inst = self._container(body)
        await nics.disconnect(self.ctl, project=PROJECT, ref=inst.id, network=network_id)
        return Empty(status=200)

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/networks/{id}/connect", self.connect),
            Route("POST", "/networks/{id}/disconnect", self.disconnect),
        ]
