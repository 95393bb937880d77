"""``atoll router`` and ``atoll fip`` against a mocked SDK: what each command sends."""

from __future__ import annotations

from unittest.mock import MagicMock

from atoll.schemas import NetworkCreate
from atoll.schemas_routing import (
    FloatingIp,
    FloatingIpCreate,
    Router,
    RouterCreate,
    RouterGateway,
    RouterUpdate,
    StaticRouteWire,
)
from tests.cli.conftest import Invoke

ROUTER_ID = "ef" * 32


def router(**kw: object) -> Router:
    fields: dict[str, object] = {
        "id": ROUTER_ID,
        "name": "r1",
        "project": "default",
        "interfaces": [],
        "external_gateway": None,
        "routes": [],
        "created_at": "2024-01-01T00:00:00Z",
    }
    return Router.model_validate({**fields, **kw})


def fip(**kw: object) -> FloatingIp:
    fields: dict[str, object] = {
        "id": "12" * 32,
        "project": "default",
        "network": "ab" * 32,
        "ip": "203.0.113.3",
        "port": None,
        "fixed_ip": None,
        "instance": None,
        "router": None,
        "created_at": "2024-01-01T00:00:00Z",
    }
    return FloatingIp.model_validate({**fields, **kw})


def test_router_create_and_set(cli: Invoke, api: MagicMock) -> None:
    api.create_router.return_value = router()
    result = cli(
        "router", "create", "r1", "--external-gateway", "ext", "--no-snat", "--route", "10.9.0.0/16=10.1.0.5"
    )
    assert result.exit_code == 0, result.output
    assert api.create_router.call_args.args[0] == RouterCreate(
        name="r1",
        external_gateway="ext",
        snat=False,
        routes=[StaticRouteWire(destination="10.9.0.0/16", nexthop="10.1.0.5")],
    )
    api.update_router.return_value = router()
    assert cli("router", "set", "r1", "--no-external-gateway", "--no-routes").exit_code == 0
    ref, update = api.update_router.call_args.args
    assert ref == "r1" and update == RouterUpdate(external_gateway=None, routes=[])
    assert update.model_fields_set == {"external_gateway", "routes"}  # sent, so cleared
    assert cli("router", "set", "r1", "--snat").exit_code == 0
    assert api.update_router.call_args.args[1].model_fields_set == {"snat"}
    result = cli("router", "create", "r2", "--route", "10.9.0.0/16")
    assert result.exit_code != 0 and "DEST=NEXTHOP" in result.output


def test_router_interfaces_and_ls(cli: Invoke, api: MagicMock) -> None:
    api.add_router_interface.return_value = router()
    assert cli("router", "add-interface", "r1", "web-sub").exit_code == 0
    api.add_router_interface.assert_called_once_with("r1", "web-sub")
    gw = RouterGateway(network="ab" * 32, port="cd" * 32, ip="203.0.113.2", snat=True)
    api.routers.return_value = [router(external_gateway=gw)]
    out = cli("router", "ls").output
    assert "r1" in out and "203.0.113.2" in out and "snat" in out


def test_fip_commands(cli: Invoke, api: MagicMock) -> None:
    api.create_floating_ip.return_value = fip()
    result = cli("fip", "create", "ext", "--ip", "203.0.113.3")
    assert result.exit_code == 0 and result.output.strip() == "203.0.113.3"
    assert api.create_floating_ip.call_args.args[0] == FloatingIpCreate(network="ext", ip="203.0.113.3")
    api.associate_floating_ip.return_value = fip(fixed_ip="10.1.0.2")
    result = cli("fip", "associate", "203.0.113.3", "app")
    assert result.output.strip() == "203.0.113.3 -> 10.1.0.2"
    api.associate_floating_ip.assert_called_once_with("203.0.113.3", "app")


def test_network_create_external(cli: Invoke, api: MagicMock) -> None:
    cli("network", "create", "ext", "--external", "--uplink", "eth1", "--subnet", "203.0.113.0/24")
    sent = api.create_network.call_args.args[0]
    assert isinstance(sent, NetworkCreate) and sent.type == "external" and sent.uplink == "eth1"
