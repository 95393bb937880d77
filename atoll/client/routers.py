"""SDK methods for routers and floating IPs, one method per endpoint (a mixin of ``AtollAPI``)."""

from __future__ import annotations

from atoll.client.plumbing import ClientCore as _Client
from atoll.client.plumbing import model_of as _one
from atoll.client.plumbing import models_of as _many
from atoll.schemas_routing import (
    FloatingIp,
    FloatingIpAssociate,
    FloatingIpCreate,
    Router,
    RouterCreate,
    RouterInterfaceRequest,
    RouterUpdate,
)


class RouterMethods:
    def routers(self: _Client) -> list[Router]:
        return _many(self._request("GET", self._path("routers")), Router)

    def create_router(self: _Client, spec: RouterCreate) -> Router:
        body = spec.model_dump(mode="json", exclude_unset=True)
        return _one(self._request("POST", self._path("routers"), json=body), Router)

    def inspect_router(self: _Client, ref: str) -> Router:
        return _one(self._request("GET", self._path("routers", ref)), Router)

    def update_router(self: _Client, ref: str, spec: RouterUpdate) -> Router:
        """Only the fields set on ``spec`` change; ``external_gateway=None`` set explicitly clears it."""
        body = spec.model_dump(mode="json", exclude_unset=True)
        return _one(self._request("PATCH", self._path("routers", ref), json=body), Router)

    def remove_router(self: _Client, ref: str) -> None:
        self._request("DELETE", self._path("routers", ref))

    def add_router_interface(self: _Client, ref: str, subnet: str) -> Router:
        body = RouterInterfaceRequest(subnet=subnet).model_dump(mode="json")
        return _one(self._request("POST", self._path("routers", ref, "interfaces"), json=body), Router)

    def remove_router_interface(self: _Client, ref: str, subnet: str) -> Router:
        return _one(self._request("DELETE", self._path("routers", ref, "interfaces", subnet)), Router)

    def floating_ips(self: _Client) -> list[FloatingIp]:
        return _many(self._request("GET", self._path("floatingips")), FloatingIp)

    def create_floating_ip(self: _Client, spec: FloatingIpCreate) -> FloatingIp:
        body = spec.model_dump(mode="json", exclude_unset=True)
        return _one(self._request("POST", self._path("floatingips"), json=body), FloatingIp)

    def inspect_floating_ip(self: _Client, ref: str) -> FloatingIp:
        return _one(self._request("GET", self._path("floatingips", ref)), FloatingIp)

    def associate_floating_ip(self: _Client, ref: str, port: str) -> FloatingIp:
        """Map it to ``port`` (a port id, or an instance's name or id); associating again moves it."""
        body = FloatingIpAssociate(port=port).model_dump(mode="json")
        return _one(self._request("POST", self._path("floatingips", ref, "associate"), json=body), FloatingIp)

    def disassociate_floating_ip(self: _Client, ref: str) -> FloatingIp:
        return _one(self._request("POST", self._path("floatingips", ref, "disassociate")), FloatingIp)

    def remove_floating_ip(self: _Client, ref: str) -> None:
        self._request("DELETE", self._path("floatingips", ref))
