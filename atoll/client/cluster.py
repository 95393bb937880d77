"""SDK methods for the cluster: hosts with capacity and state, drain, removal, join tokens.

A mixin of ``AtollAPI``; it only uses the client's HTTP plumbing.
"""

from __future__ import annotations

from urllib.parse import quote

from atoll.client.plumbing import ClientCore as _Client
from atoll.client.plumbing import model_of as _one
from atoll.client.plumbing import models_of as _many
from atoll.host_schemas import HostDetail, Token
from atoll.schemas_controllers import ControllerInfo
from atoll.schemas_moves import Evacuation


def _host(ref: str, *more: str) -> str:
    return "/".join(["/v1/cluster/hosts", quote(ref, safe=""), *more])


class ClusterMethods:
    def controllers(self: _Client) -> list[ControllerInfo]:
        """The controllers sharing the cloud's database, alive or expired (``atoll controller ls``)."""
        return _many(self._request("GET", "/v1/cluster/controllers"), ControllerInfo)

    def cluster_hosts(self: _Client) -> list[HostDetail]:
        return _many(self._request("GET", "/v1/cluster/hosts"), HostDetail)

    def cluster_host(self: _Client, ref: str) -> HostDetail:
        return _one(self._request("GET", _host(ref)), HostDetail)

    def drain_host(self: _Client, ref: str) -> HostDetail:
        return _one(self._request("POST", _host(ref, "drain")), HostDetail)

    def undrain_host(self: _Client, ref: str) -> HostDetail:
        return _one(self._request("POST", _host(ref, "undrain")), HostDetail)

    def evacuate_host(self: _Client, ref: str, *, force: bool = False) -> Evacuation:
        """Drain the host and move every instance on it elsewhere; waits until each has moved."""
        resp = self._request(
            "POST", _host(ref, "evacuate"), json={"force": force}, timeout=self._no_read_timeout
        )
        return _one(resp, Evacuation)

    def remove_host(self: _Client, ref: str) -> None:
        self._request("DELETE", _host(ref))

    def create_join_token(self: _Client, ttl: float = 3600.0) -> Token:
        return _one(self._request("POST", "/v1/cluster/tokens", json={"ttl": ttl}), Token)
