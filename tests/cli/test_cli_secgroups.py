"""``atoll sg``, ``atoll port update|mappings`` and ``run -p/--sg`` against a mocked SDK; Docker's ``-p``."""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest
import typer

from atoll.cli.publishopts import parse_publish
from atoll.schemas import (
    PublishedPortWire,
    PublishRequest,
    SecurityGroup,
    SecurityGroupRule,
    SecurityGroupRuleCreate,
)
from tests.cli.conftest import Invoke
from tests.cli.factories import make_instance

GROUP = "ef" * 32


def test_publish_syntax() -> None:
    assert parse_publish("8080:80") == [PublishRequest(container_port=80, host_port=8080)]
    assert parse_publish("127.0.0.1:8080:80/tcp") == [
        PublishRequest(container_port=80, host_port=8080, host_ip="127.0.0.1")
    ]
    assert parse_publish("127.0.0.1::80") == [PublishRequest(container_port=80, host_ip="127.0.0.1")]
    assert parse_publish("80") == [PublishRequest(container_port=80)]
    assert parse_publish("53:53/udp") == [PublishRequest(container_port=53, host_port=53, protocol="udp")]
    assert [(p.host_port, p.container_port) for p in parse_publish("8000-8002:80-82")] == [
        (8000, 80), (8001, 81), (8002, 82),
    ]  # fmt: skip
    assert [(p.host_port, p.container_port) for p in parse_publish("80-81")] == [(None, 80), (None, 81)]
    for bad in ("80/sctp", "a:b", "8000-8001:80", "0", "70000", "1:2:3:4", "[::1]:80:80", "90-80", "8080:"):
        with pytest.raises(typer.BadParameter):
            parse_publish(bad)


def test_run_publishes_and_picks_groups(cli: Invoke, api: MagicMock) -> None:
    api.create_instance.return_value = make_instance()
    api.start_instance.return_value = make_instance(status="running")
    result = cli(
        "run", "-d", "--network", "web", "--sg", "web", "--security-group", "default",
        "-p", "8080:80", "--publish", "127.0.0.1::443", "busybox", "httpd",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    spec = api.create_instance.call_args.args[0]
    assert spec.security_groups == ["web", "default"]
    assert spec.publish == [
        PublishRequest(container_port=80, host_port=8080),
        PublishRequest(container_port=443, host_ip="127.0.0.1"),
    ]
    assert spec.publish_all is False
    cli("run", "-d", "-P", "busybox")
    assert api.create_instance.call_args.args[0].publish_all is True
    bad = cli("run", "-d", "-p", "80/sctp", "busybox")
    assert bad.exit_code != 0 and "sctp" in bad.output  # a usage error, as for --network


def test_port_mappings(cli: Invoke, api: MagicMock) -> None:
    api.inspect_instance.return_value = make_instance(
        published=[PublishedPortWire(container_port=80, protocol="tcp", host_ip="0.0.0.0", host_port=32768)]
    )
    result = cli("port", "mappings", "web")
    assert result.stdout == "80/tcp -> 0.0.0.0:32768\n"


def test_rule_add_and_group_commands(cli: Invoke, api: MagicMock) -> None:
    rule = SecurityGroupRule(
        id="12" * 32, group=GROUP, direction="ingress", ethertype="IPv4", protocol="tcp", port_range_min=80,
        port_range_max=90, remote_ip_prefix=None, remote_group=GROUP, created_at="2024-01-01T00:00:00Z",
    )  # fmt: skip
    api.add_security_group_rule.return_value = rule
    result = cli(
        "sg", "rule", "add", "web", "--ingress", "--proto", "tcp", "--port", "80:90", "--remote-group", "web"
    )
    assert result.exit_code == 0, result.output
    api.add_security_group_rule.assert_called_once_with(
        "web",
        SecurityGroupRuleCreate(
            direction="ingress", protocol="tcp", port_range_min=80, port_range_max=90, remote_group="web"
        ),
    )
    group = SecurityGroup(
        id=GROUP,
        name="web",
        project="default",
        description="",
        rules=[rule],
        created_at="2024-01-01T00:00:00Z",
    )
    api.inspect_security_group.return_value = group
    api.security_groups.return_value = [group]
    shown = cli("sg", "show", "web").stdout
    assert "ingress" in shown and "80:90" in shown and "group web" in shown
    assert "web" in cli("sg", "ls").stdout
    assert cli("sg", "rule", "add", "web", "--port", "eighty").exit_code != 0
    assert cli("port", "update", "abcd").exit_code != 0  # says which groups
    cli("port", "update", "web", "--instance", "--no-security-group")
    api.set_instance_security_groups.assert_called_once_with("web", [])
