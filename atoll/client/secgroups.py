"""SDK methods for security groups and the groups of ports and instances, one method per endpoint.

A mixin of ``AtollAPI``; it only uses the client's HTTP plumbing, which ``_Client`` describes.
"""

from __future__ import annotations

from atoll.client.plumbing import ClientCore as _Client
from atoll.client.plumbing import model_of as _one
from atoll.client.plumbing import models_of as _many
from atoll.schemas import (
    Port,
    SecurityGroup,
    SecurityGroupCreate,
    SecurityGroupRule,
    SecurityGroupRuleCreate,
    SecurityGroupsUpdate,
)


class SecurityGroupMethods:
    def security_groups(self: _Client) -> list[SecurityGroup]:
        return _many(self._request("GET", self._path("security-groups")), SecurityGroup)

    def create_security_group(self: _Client, spec: SecurityGroupCreate) -> SecurityGroup:
        body = spec.model_dump(mode="json", exclude_unset=True)
        return _one(self._request("POST", self._path("security-groups"), json=body), SecurityGroup)

    def inspect_security_group(self: _Client, ref: str) -> SecurityGroup:
        return _one(self._request("GET", self._path("security-groups", ref)), SecurityGroup)

    def remove_security_group(self: _Client, ref: str) -> None:
        self._request("DELETE", self._path("security-groups", ref))

    def add_security_group_rule(
        self: _Client, group: str, spec: SecurityGroupRuleCreate
    ) -> SecurityGroupRule:
        body = spec.model_dump(mode="json", exclude_unset=True)
        resp = self._request("POST", self._path("security-groups", group, "rules"), json=body)
        return _one(resp, SecurityGroupRule)

    def remove_security_group_rule(self: _Client, ref: str) -> None:
        self._request("DELETE", self._path("security-group-rules", ref))

    def set_port_security_groups(self: _Client, port: str, groups: list[str]) -> Port:
        body = SecurityGroupsUpdate(security_groups=groups).model_dump(mode="json")
        return _one(self._request("PUT", self._path("ports", port, "security-groups"), json=body), Port)

    def set_instance_security_groups(self: _Client, instance: str, groups: list[str]) -> list[Port]:
        body = SecurityGroupsUpdate(security_groups=groups).model_dump(mode="json")
        resp = self._request("PUT", self._path("instances", instance, "security-groups"), json=body)
        return _many(resp, Port)
