"""Wire models of routers and floating IPs (the request and response bodies of their endpoints)."""

from __future__ import annotations

from pydantic import Field

from atoll.schemas import Wire

NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$"


class StaticRouteWire(Wire):
    destination: str = Field(description="IPv4 CIDR, e.g. 10.50.0.0/16")
    nexthop: str = Field(description="an address on one of the router's subnets")


class RouterCreate(Wire):
    name: str = Field(pattern=NAME)
    external_gateway: str | None = Field(default=None, description="external network name or id")
    snat: bool = True
    routes: list[StaticRouteWire] = []


class RouterUpdate(Wire):
    """Fields left out stay as they are; ``external_gateway: null`` (or "") removes the gateway."""

    external_gateway: str | None = None
    snat: bool | None = None
    routes: list[StaticRouteWire] | None = None


class RouterInterfaceRequest(Wire):
    subnet: str = Field(min_length=1, description="subnet name or id (of the router's project)")


class RouterInterface(Wire):
    subnet: str
    network: str
    port: str
    ip: str
    """The subnet's gateway address, which the router holds."""


class RouterGateway(Wire):
    network: str
    port: str
    ip: str
    snat: bool


class Router(Wire):
    id: str
    name: str
    project: str
    interfaces: list[RouterInterface]
    external_gateway: RouterGateway | None
    routes: list[StaticRouteWire]
    created_at: str
    host: str | None = Field(default=None, description="the host that realises the router (its network node)")


class FloatingIpCreate(Wire):
    network: str = Field(min_length=1, description="external network name or id")
    ip: str | None = Field(default=None, description="a chosen address; default: the next free one")
    port: str | None = Field(default=None, description="associate at once with this port or instance")


class FloatingIpAssociate(Wire):
    port: str = Field(min_length=1, description="port id, or instance name or id (its first port that can)")


class FloatingIp(Wire):
    id: str
    project: str
    network: str
    ip: str
    port: str | None
    """The associated instance port, if any."""
    fixed_ip: str | None
    instance: str | None
    router: str | None
    """The router that carries its traffic, while associated."""
    created_at: str
