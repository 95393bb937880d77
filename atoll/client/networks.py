"""SDK methods for tenant networking: networks, subnets and ports, one method per endpoint.

A mixin of ``AtollAPI`` (one concept per module); it only uses the client's HTTP plumbing, which
``_Client`` describes.
"""

from __future__ import annotations

from atoll.client.plumbing import ClientCore as _Client
from atoll.client.plumbing import model_of as _one
from atoll.client.plumbing import models_of as _many
from atoll.schemas import Instance, InstanceNetwork, Network, NetworkCreate, Port, Subnet, SubnetCreate


class NetworkMethods:
    def networks(self: _Client) -> list[Network]:
        return _many(self._request("GET", self._path("networks")), Network)

    def create_network(self: _Client, spec: NetworkCreate) -> Network:
        body = spec.model_dump(mode="json", exclude_unset=True)
        return _one(self._request("POST", self._path("networks"), json=body), Network)

    def inspect_network(self: _Client, ref: str) -> Network:
        return _one(self._request("GET", self._path("networks", ref)), Network)

    def remove_network(self: _Client, ref: str) -> None:
        self._request("DELETE", self._path("networks", ref))

    def subnets(self: _Client, *, network: str | None = None) -> list[Subnet]:
        params = {"network": network} if network else {}
        return _many(self._request("GET", self._path("subnets"), params=params), Subnet)

    def create_subnet(self: _Client, spec: SubnetCreate) -> Subnet:
        body = spec.model_dump(mode="json", exclude_unset=True)
        return _one(self._request("POST", self._path("subnets"), json=body), Subnet)

    def inspect_subnet(self: _Client, ref: str) -> Subnet:
        return _one(self._request("GET", self._path("subnets", ref)), Subnet)

    def remove_subnet(self: _Client, ref: str) -> None:
        self._request("DELETE", self._path("subnets", ref))

    def ports(self: _Client, *, network: str | None = None, instance: str | None = None) -> list[Port]:
        params = {k: v for k, v in (("network", network), ("instance", instance)) if v}
        return _many(self._request("GET", self._path("ports"), params=params), Port)

    def inspect_port(self: _Client, ref: str) -> Port:
        return _one(self._request("GET", self._path("ports", ref)), Port)

    def connect_network(
        self: _Client,
        instance: str,
        network: str,
        *,
        ip: str | None = None,
        aliases: list[str] | None = None,
        mac: str | None = None,
    ) -> Instance:
        """Give an existing instance (created, running or stopped) a NIC on ``network``."""
        request = InstanceNetwork(network=network, ip=ip, aliases=aliases or [], mac=mac)
        body = request.model_dump(mode="json", exclude_none=True)
        return _one(self._request("POST", self._path("instances", instance, "networks"), json=body), Instance)

    def disconnect_network(self: _Client, instance: str, network: str) -> Instance:
        """Remove the instance's NIC on ``network`` and release its address."""
        return _one(self._request("DELETE", self._path("instances", instance, "networks", network)), Instance)
