"""Network endpoints: create, list, inspect, remove, prune; connect/disconnect are in netconnect.py.

A Docker network is a native tenant network of the project: Driver ``bridge`` -> native ``bridge``
(host-local), ``overlay`` -> native ``overlay``. IPAM Config becomes the network's subnets (Subnet ->
cidr, Gateway -> gateway, IPRange -> one allocation pool); without Config a free block of the default
address pools is taken, as dockerd does.

Docker-only attributes with no native counterpart (Internal, Attachable, IPRange as given, the Docker
driver name) are kept as labels under ``DOCKER_LABEL``, so inspect answers exactly what was created
(Compose compares them); the Docker views hide those labels.

Predefined names, as dockerd lists them: ``bridge`` is the project's native network of that name,
made on first use (listing, inspecting, or a container without ``--network``), so a container gets a
real address like on Docker; ``none`` (loopback only) and ``host`` (refused for containers) are listed
with fixed ids and cannot be removed. Tenant networks have no route out unless a router joins them
(docs/routers.md): a network that is not ``Internal`` (``bridge`` too) gets a router of its own with
its gateway on the cloud's Docker uplink network, when there is one (services/outbound.py); the
router goes with the network. ``Internal: true`` networks never get one.
"""

from __future__ import annotations

import hashlib
import ipaddress
from ipaddress import IPv4Address
from typing import Any

from pydantic import ValidationError

from atoll.api.docker.http import DockerError, Empty, Json, Request, bad_request
from atoll.api.docker.router import Route
from atoll.model.errors import Conflict, InvalidInput, NotFound
from atoll.schemas import AllocationPool, Network, NetworkCreate, SubnetSpec
from atoll.services import instances, netports, networks, outbound
from atoll.services.context import Controller
from atoll.services.routernudge import routing_changed

PROJECT = "default"
DOCKER_LABEL = "io.atoll.docker."
DEFAULT_NETWORK = "bridge"
SPECIAL = ("host", "none")
DRIVERS = {"bridge": "bridge", "overlay": "overlay"}
LIST_FILTERS = {"name", "id", "label", "driver", "type", "dangling", "scope"}
CREATE_FIELDS = {
    "Name", "CheckDuplicate", "Driver", "Internal", "Attachable", "Ingress", "IPAM", "EnableIPv6",
    "EnableIPv4", "Options", "Labels", "Scope", "ConfigOnly", "ConfigFrom",
}  # fmt: skip


def special_id(name: str) -> str:
    """Stable ids for ``host`` and ``none`` (64 hex digits, like every Docker id)."""
    return hashlib.sha256(f"atoll-docker-network-{name}".encode()).hexdigest()


def user_labels(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if not k.startswith(DOCKER_LABEL)}


def _flag(net: Network, name: str) -> bool:
    return net.labels.get(DOCKER_LABEL + name) == "true"


def _ipam_config(net: Network) -> list[dict[str, str]]:
    out = []
    for sub in net.subnets:
        entry = {"Subnet": sub.cidr}
        if sub.gateway:
            entry["Gateway"] = sub.gateway
        ip_range = net.labels.get(f"{DOCKER_LABEL}iprange.{sub.cidr}")
        if ip_range:
            entry["IPRange"] = ip_range
        out.append(entry)
    return out


def _int_bool(value: Any, field: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{field}: expected a boolean")
    return value


def _subnet(entry: Any, i: int) -> tuple[SubnetSpec, str]:
    field = f"IPAM.Config[{i}]"
    if not isinstance(entry, dict):
        raise bad_request(f"{field}: expected an object")
    for key, value in entry.items():
        if key not in ("Subnet", "Gateway", "IPRange", "AuxiliaryAddresses") or (
            key == "AuxiliaryAddresses" and value
        ):
            raise bad_request(f"{field}.{key}: not supported by Atoll yet")
    cidr = entry.get("Subnet") or ""
    if not cidr:
        raise bad_request(f"{field}.Subnet: required when IPAM.Config is given")
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise bad_request(f"{field}.Subnet: invalid CIDR {cidr!r}") from None
    if net.version != 4:
        raise bad_request(f"{field}.Subnet: only IPv4 is supported")
    pools = None
    ip_range = entry.get("IPRange") or ""
    if ip_range:
        try:
            rng = ipaddress.ip_network(ip_range, strict=False)
        except ValueError:
            raise bad_request(f"{field}.IPRange: invalid CIDR {ip_range!r}") from None
        if not rng.subnet_of(net):  # type: ignore[arg-type]
            raise bad_request(f"{field}.IPRange: {ip_range} is not inside {cidr}")
        # Docker allocates anywhere in the range but the subnet's own network and broadcast addresses
        start = max(rng.network_address, net.network_address + 1)
        end = min(rng.broadcast_address, net.broadcast_address - 1)
        gateway = entry.get("Gateway") or str(net.network_address + 1)
        pools = _around_gateway(IPv4Address(int(start)), IPv4Address(int(end)), gateway)
    try:
        spec = SubnetSpec(cidr=cidr, gateway=entry.get("Gateway") or None, allocation_pools=pools)
    except ValidationError as e:
        raise bad_request(f"{field}: {e.errors()[0]['msg']}") from None
    return spec, ip_range


def _around_gateway(start: IPv4Address, end: IPv4Address, gateway: str) -> list[AllocationPool]:
    """Docker hands out the range but never the gateway in it: the pool is split around it."""
    try:
        gw = IPv4Address(gateway)
    except ValueError:
        gw = None  # the subnet's own validation names the bad gateway
    if gw is None or not start <= gw <= end:
        return [AllocationPool(start=str(start), end=str(end))]
    parts = [(start, gw - 1), (gw + 1, end)]
    return [AllocationPool(start=str(a), end=str(b)) for a, b in parts if a <= b]


def default_network(ctl: Controller) -> Network:
    """The project's ``bridge`` network, made on first use."""
    return _default_network(ctl)[0]


async def ready_default_network(ctl: Controller) -> Network:
    """``default_network``; when this call made it, its outbound router is realised before returning."""
    net, made = _default_network(ctl)
    if made:
        await routing_changed(ctl)
    return net


async def ensure_default_network(ctl: Controller) -> None:
    """``ready_default_network`` for callers that only need it to exist (every `docker create`): once
    it does, one lookup instead of building its view."""
    if not networks.has_network(ctl, project=PROJECT, ref=DEFAULT_NETWORK):
        await ready_default_network(ctl)


def _default_network(ctl: Controller) -> tuple[Network, bool]:
    """The network, and whether this call made it (with its outbound router, see services/outbound)."""
    try:
        return networks.get_network(ctl, project=PROJECT, ref=DEFAULT_NETWORK), False
    except NotFound:
        pass
    request = NetworkCreate(
        name=DEFAULT_NETWORK,
        type="bridge",
        labels={DOCKER_LABEL + "driver": "bridge"},
        subnets=[SubnetSpec(cidr="auto")],
    )
    try:
        net = networks.create_network(ctl, project=PROJECT, request=request)
    except Conflict:  # made meanwhile
        return networks.get_network(ctl, project=PROJECT, ref=DEFAULT_NETWORK), False
    outbound.give_rows(ctl, project=PROJECT, network=net)  # a failure leaves it without, as logged
    return net, True


class Networks:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl

    # -- lookups -------------------------------------------------------------------------------

    def default_network(self) -> Network:
        return default_network(self.ctl)

    def get(self, ref: str) -> Network:
        if ref == DEFAULT_NETWORK:
            return self.default_network()
        try:
            return networks.get_network(self.ctl, project=PROJECT, ref=ref)
        except NotFound:
            raise DockerError(404, f"network {ref} not found") from None

    # -- views ---------------------------------------------------------------------------------

    def _containers(self, net: Network) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for port in netports.list_ports(self.ctl, project=PROJECT, network=net.id):
            if not port.instance:
                continue
            try:
                inst = instances.get(self.ctl, project=PROJECT, ref=port.instance)
            except NotFound:
                continue
            prefix = next((n.prefix_len for n in inst.networks if n.port == port.id), 32)
            ip = port.fixed_ips[0].ip if port.fixed_ips else ""
            out[inst.id] = {
                "Name": inst.name,
                "EndpointID": port.id,
                "MacAddress": port.mac,
                "IPv4Address": f"{ip}/{prefix}" if ip else "",
                "IPv6Address": "",
            }
        return out

    def view(self, net: Network, containers: bool = True) -> dict[str, Any]:
        driver = net.labels.get(DOCKER_LABEL + "driver") or ("bridge" if net.type == "bridge" else net.type)
        return {
            "Name": net.name,
            "Id": net.id,
            "Created": net.created_at,
            "Scope": "local",
            "Driver": driver,
            "EnableIPv4": True,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {}, "Config": _ipam_config(net)},
            "Internal": _flag(net, "internal"),
            "Attachable": _flag(net, "attachable"),
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": self._containers(net) if containers else {},
            "Options": {"com.docker.network.driver.mtu": str(net.mtu)}
            if net.labels.get(DOCKER_LABEL + "mtu")
            else {},
            "Labels": user_labels(net.labels),
        }

    def special_view(self, name: str) -> dict[str, Any]:
        return {
            "Name": name,
            "Id": special_id(name),
            "Created": "0001-01-01T00:00:00Z",
            "Scope": "local",
            "Driver": "null" if name == "none" else "host",
            "EnableIPv4": True,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": []},
            "Internal": False,
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": {},
            "Options": {},
            "Labels": {},
        }

    def _special(self, ref: str) -> str | None:
        for name in SPECIAL:
            if ref == name or (len(ref) >= 3 and special_id(name).startswith(ref)):
                return name
        return None

    # -- endpoints -----------------------------------------------------------------------------

    async def create(self, req: Request) -> Json:
        body = req.json_object()
        for key in body:
            if key not in CREATE_FIELDS:
                raise bad_request(f"{key}: not supported by Atoll yet")
        name = body.get("Name")
        if not name or not isinstance(name, str):
            raise bad_request("Name: a network name is required")
        if name in (DEFAULT_NETWORK, *SPECIAL):
            raise DockerError(403, f"{name} is a pre-defined network and cannot be created")
        driver = body.get("Driver") or "bridge"
        if driver not in DRIVERS:
            raise bad_request(f"Driver: {driver!r} is not supported by Atoll (bridge, overlay)")
        if _int_bool(body.get("EnableIPv6"), "EnableIPv6"):
            raise bad_request("EnableIPv6: IPv6 networks are not supported by Atoll yet")
        if body.get("EnableIPv4") is False:
            raise bad_request("EnableIPv4: IPv4 cannot be turned off")
        for key in ("Ingress", "ConfigOnly"):
            if _int_bool(body.get(key), key):
                raise bad_request(f"{key}: not supported by Atoll")
        if (body.get("ConfigFrom") or {}).get("Network"):
            raise bad_request("ConfigFrom: not supported by Atoll")
        if (body.get("Scope") or "local") != "local":
            raise bad_request(f"Scope: only 'local' is supported (got {body.get('Scope')!r})")
        labels = body.get("Labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise bad_request("Labels: expected a map of strings")
        if any(k.startswith(DOCKER_LABEL) for k in labels):
            raise bad_request(f"Labels: keys starting with {DOCKER_LABEL} are reserved")
        labels = dict(labels)
        labels[DOCKER_LABEL + "driver"] = driver
        for key in ("Internal", "Attachable"):
            if _int_bool(body.get(key), key):
                labels[DOCKER_LABEL + key.lower()] = "true"
        mtu = None
        options = body.get("Options") or {}
        if not isinstance(options, dict):
            raise bad_request("Options: expected a map of strings")
        for key, value in options.items():
            if key != "com.docker.network.driver.mtu":
                raise bad_request(f"Options.{key}: not supported by Atoll yet")
            try:
                mtu = int(value)
            except (TypeError, ValueError):
                raise bad_request(f"Options.{key}: expected an integer") from None
            labels[DOCKER_LABEL + "mtu"] = "true"
        ipam = body.get("IPAM") or {}
        if not isinstance(ipam, dict):
            raise bad_request("IPAM: expected an object")
        if (ipam.get("Driver") or "default") != "default":
            raise bad_request(f"IPAM.Driver: {ipam.get('Driver')!r} is not supported (default)")
        if ipam.get("Options"):
            raise bad_request("IPAM.Options: not supported by Atoll yet")
        subnets = []
        for i, entry in enumerate(ipam.get("Config") or []):
            spec, ip_range = _subnet(entry, i)
            subnets.append(spec)
            if ip_range:
                canonical = str(ipaddress.ip_network(spec.cidr, strict=False))
                labels[f"{DOCKER_LABEL}iprange.{canonical}"] = ip_range
        try:
            request = NetworkCreate(
                name=name,
                type=DRIVERS[driver],
                mtu=mtu,
                labels=labels,
                subnets=subnets or [SubnetSpec(cidr="auto")],
            )
        except ValidationError:
            raise bad_request(f"Name: invalid network name {name!r}") from None
        try:
            net = networks.create_network(self.ctl, project=PROJECT, request=request)
        except Conflict:
            raise DockerError(409, f"network with name {name} already exists") from None
        except InvalidInput as e:
            raise bad_request(_docker_fields(e.message)) from None
        warning = (
            "" if _flag(net, "internal") else await outbound.give(self.ctl, project=PROJECT, network=net)
        )
        return Json({"Id": net.id, "Warning": warning}, status=201)

    async def inspect(self, req: Request) -> Json:
        ref = req.params["id"]
        special = self._special(ref)
        if special:
            return Json(self.special_view(special))
        if ref == DEFAULT_NETWORK:
            await ready_default_network(self.ctl)
        return Json(self.view(self.get(ref)))

    async def _all(self) -> list[dict[str, Any]]:
        await ready_default_network(self.ctl)
        views = [self.view(n) for n in networks.list_networks(self.ctl, project=PROJECT)]
        return views + [self.special_view(name) for name in SPECIAL]

    async def list_(self, req: Request) -> Json:
        filters = req.filters()
        unknown = set(filters) - LIST_FILTERS
        if unknown:
            raise bad_request(f"invalid filter '{sorted(unknown)[0]}'")
        return Json([v for v in await self._all() if _match(v, filters)])

    async def remove(self, req: Request) -> Empty:
        ref = req.params["id"]
        if self._special(ref) or ref == DEFAULT_NETWORK:
            raise DockerError(403, f"{ref} is a pre-defined network and cannot be removed")
        net = self.get(ref)
        if net.name == DEFAULT_NETWORK:
            raise DockerError(403, f"{ref} is a pre-defined network and cannot be removed")
        await self._remove(net)
        return Empty()

    async def _remove(self, net: Network) -> None:
        """The network and its outbound router; refused (403) while containers use it."""
        members = self._containers(net)
        if members:
            names = ", ".join(sorted(m["Name"] for m in members.values()))
            raise DockerError(403, f"error while removing network: network {net.name} is in use by {names}")
        try:
            await outbound.take(self.ctl, project=PROJECT, network=net)
            networks.remove_network(self.ctl, project=PROJECT, ref=net.id)
        except Conflict as e:
            raise DockerError(403, f"error while removing network: {e.message}") from None

    async def prune(self, req: Request) -> Json:
        filters = req.filters()
        unknown = set(filters) - {"label", "until"}
        if unknown:
            raise bad_request(f"invalid filter '{sorted(unknown)[0]}'")
        if "until" in filters:
            raise bad_request("invalid filter 'until': not supported by Atoll yet")
        deleted = []
        for net in networks.list_networks(self.ctl, project=PROJECT):
            view = self.view(net)
            if net.name == DEFAULT_NETWORK or net.type == "external" or view["Containers"]:
                continue
            if not _match(view, {"label": filters.get("label", [])}):
                continue
            try:
                await self._remove(net)
            except DockerError:
                continue
            deleted.append(net.name)
        return Json({"NetworksDeleted": deleted})

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/networks/create", self.create),
            Route("GET", "/networks", self.list_),
            Route("POST", "/networks/prune", self.prune),
            Route("GET", "/networks/{id}", self.inspect),
            Route("DELETE", "/networks/{id}", self.remove),
        ]


def _docker_fields(message: str) -> str:
    return (
        message.replace("subnets[", "IPAM.Config[")
        .replace("].cidr", "].Subnet")
        .replace("].gateway", "].Gateway")
        .replace("].allocation_pools", "].IPRange")
    )


def _match(view: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    if "name" in filters and not any(n in view["Name"] for n in filters["name"]):
        return False
    if "id" in filters and not any(view["Id"].startswith(i) for i in filters["id"]):
        return False
    if "driver" in filters and view["Driver"] not in filters["driver"]:
        return False
    if "scope" in filters and view["Scope"] not in filters["scope"]:
        return False
    builtin = view["Name"] in (DEFAULT_NETWORK, *SPECIAL)
    for wanted in filters.get("type", []):
        if wanted not in ("custom", "builtin"):
            raise bad_request(f"invalid filter: 'type'='{wanted}'")
        if (wanted == "builtin") != builtin:
            return False
    for wanted in filters.get("dangling", []):
        if wanted.lower() not in ("true", "false", "1", "0"):
            raise bad_request(f"invalid filter 'dangling={wanted}'")
        dangling = wanted.lower() in ("true", "1")
        if dangling != (not builtin and not view["Containers"]):
            return False
    for wanted in filters.get("label", []):
        key, eq, value = wanted.partition("=")
        labels = view["Labels"]
        if key not in labels or (eq and labels[key] != value):
            return False
    return True
