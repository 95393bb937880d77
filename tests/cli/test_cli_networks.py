"""``atoll network|subnet|port`` and ``run --network`` against a mocked SDK."""

from __future__ import annotations

import json
from unittest.mock import MagicMock

import httpx
import pytest
import typer

from atoll.cli.netopts import instance_networks, parse_network, parse_pool
from atoll.client import AtollAPI, AtollError
from atoll.schemas import (
    AllocationPool,
    FixedIp,
    InstanceNetwork,
    Network,
    NetworkCreate,
    Port,
    Subnet,
    SubnetCreate,
    SubnetSpec,
)
from tests.cli.conftest import Invoke
from tests.cli.factories import make_instance

NET_ID = "ab" * 32
SUB_ID = "cd" * 32


def subnet(**kw: object) -> Subnet:
    fields: dict[str, object] = {
        "id": SUB_ID,
        "name": "10.0.0.0_24",
        "project": "default",
        "network": NET_ID,
        "cidr": "10.0.0.0/24",
        "ip_version": 4,
        "gateway": "10.0.0.1",
        "allocation_pools": [AllocationPool(start="10.0.0.2", end="10.0.0.254")],
        "dns_nameservers": [],
        "created_at": "2024-01-01T00:00:00Z",
    }
    return Subnet.model_validate({**fields, **kw})


def network(**kw: object) -> Network:
    fields: dict[str, object] = {
        "id": NET_ID,
        "name": "web",
        "project": "default",
        "type": "bridge",
        "mtu": 1500,
        "labels": {},
        "subnets": [subnet()],
        "created_at": "2024-01-01T00:00:00Z",
    }
    return Network.model_validate({**fields, **kw})


def test_network_create_with_a_subnet(cli: Invoke, api: MagicMock) -> None:
    api.create_network.return_value = network()
    result = cli(
        "network", "create", "web", "--subnet", "10.0.0.0/24", "--gateway", "10.0.0.254",
        "--ip-range", "10.0.0.128/25", "--ip-range", "10.0.0.10-10.0.0.20", "--dns", "9.9.9.9",
        "--mtu", "1400", "-l", "tier=front",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == NET_ID
    api.create_network.assert_called_once_with(
        NetworkCreate(
            name="web",
            type="overlay",
            mtu=1400,
            labels={"tier": "front"},
            subnets=[
                SubnetSpec(
                    cidr="10.0.0.0/24",
                    gateway="10.0.0.254",
                    allocation_pools=[
                        AllocationPool(start="10.0.0.128", end="10.0.0.254"),  # no broadcast address
                        AllocationPool(start="10.0.0.10", end="10.0.0.20"),
                    ],
                    dns_nameservers=["9.9.9.9"],
                )
            ],
        )
    )


def test_network_create_plain_and_errors(cli: Invoke, api: MagicMock) -> None:
    api.create_network.return_value = network(subnets=[])
    assert cli("network", "create", "web").exit_code == 0
    sent = api.create_network.call_args.args[0]
    assert sent.model_dump(exclude_unset=True) == {"name": "web", "type": "overlay"}
    result = cli("network", "create", "web", "--gateway", "10.0.0.1")
    assert result.exit_code == 2 and "need --subnet" in result.output
    api.create_network.side_effect = AtollError("invalid", "type: 'flat' networks are not supported yet", 400)
    result = cli("network", "create", "web", "--type", "flat")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: type: 'flat' networks are not supported yet"


def test_network_ls_inspect_rm(cli: Invoke, api: MagicMock) -> None:
    api.networks.return_value = [network(), network(id="ef" * 32, name="db", subnets=[])]
    result = cli("network", "ls")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "TYPE", "SUBNETS", "CREATED"]
    assert lines[1].split()[:4] == [NET_ID[:12], "web", "bridge", "10.0.0.0/24"]
    assert lines[2].split()[:4] == ["efefefefefef", "db", "bridge", "-"]
    assert cli("network", "ls", "-q").stdout.split() == [NET_ID[:12], "efefefefefef"]
    api.inspect_network.return_value = network()
    shown = json.loads(cli("network", "inspect", "web").stdout)
    assert shown[0]["subnets"][0]["cidr"] == "10.0.0.0/24"
    api.remove_network.side_effect = [None, AtollError("conflict", "network db is in use", 409)]
    result = cli("network", "rm", "web", "db")
    assert result.exit_code == 1 and result.stdout == "web\n" and "network db is in use" in result.stderr


def test_subnet_commands(cli: Invoke, api: MagicMock) -> None:
    api.create_subnet.return_value = subnet()
    result = cli("subnet", "create", "web", "10.0.1.0/24", "--no-gateway", "--pool", "10.0.1.5-10.0.1.9")
    assert result.exit_code == 0, result.output
    api.create_subnet.assert_called_once_with(
        SubnetCreate(
            network="web",
            cidr="10.0.1.0/24",
            no_gateway=True,
            allocation_pools=[AllocationPool(start="10.0.1.5", end="10.0.1.9")],
        )
    )
    api.subnets.return_value = [subnet()]
    result = cli("subnet", "ls", "--network", "web")
    assert result.stdout.splitlines()[1].split() == [
        SUB_ID[:12], "10.0.0.0_24", NET_ID[:12], "10.0.0.0/24", "10.0.0.1", "10.0.0.2-10.0.0.254",
    ]  # fmt: skip
    api.subnets.assert_called_with(network="web")
    assert cli("subnet", "rm", "10.0.0.0_24").exit_code == 0
    api.remove_subnet.assert_called_once_with("10.0.0.0_24")


def test_port_ls(cli: Invoke, api: MagicMock) -> None:
    api.ports.return_value = [
        Port(
            id="12" * 32,
            project="default",
            network=NET_ID,
            instance="34" * 32,
            device="eth0",
            mac="02:a7:00:00:00:01",
            fixed_ips=[FixedIp(subnet=SUB_ID, ip="10.0.0.2")],
            aliases=[],
            created_at="2024-01-01T00:00:00Z",
        )
    ]
    result = cli("port", "ls", "--instance", "web1")
    assert result.stdout.splitlines()[1].split() == [
        "121212121212", NET_ID[:12], "343434343434", "eth0", "02:a7:00:00:00:01", "10.0.0.2",
    ]  # fmt: skip
    api.ports.assert_called_once_with(network=None, instance="web1")


def test_run_with_networks(cli: Invoke, api: MagicMock) -> None:
    api.create_instance.return_value = make_instance()
    api.start_instance.return_value = make_instance(status="running")
    result = cli(
        "run", "-d", "--network", "web", "--ip", "10.0.0.9", "--network-alias", "www",
        "--network", "name=db,ip=10.1.0.5,alias=a,alias=b", "busybox", "sleep", "9",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    spec = api.create_instance.call_args.args[0]
    assert spec.networks == [
        InstanceNetwork(network="web", ip="10.0.0.9", aliases=["www"]),
        InstanceNetwork(network="db", ip="10.1.0.5", aliases=["a", "b"]),
    ]


def test_option_parsers() -> None:
    assert parse_pool("10.0.0.5 - 10.0.0.9") == AllocationPool(start="10.0.0.5", end="10.0.0.9")
    assert parse_pool("10.0.0.0/30", "10.0.0.0/24") == AllocationPool(start="10.0.0.1", end="10.0.0.3")
    assert parse_pool("10.0.0.0/30") == AllocationPool(start="10.0.0.0", end="10.0.0.3")
    with pytest.raises(typer.BadParameter):
        parse_pool("ten")
    assert parse_network("web") == InstanceNetwork(network="web")
    with pytest.raises(typer.BadParameter, match="name=NET is missing"):
        parse_network("ip=10.0.0.1")
    with pytest.raises(typer.BadParameter, match="invalid network option"):
        parse_network("name=a,mac=x")
    with pytest.raises(typer.BadParameter, match="need a --network"):
        instance_networks([], ip="10.0.0.2")
    with pytest.raises(typer.BadParameter, match="given twice"):
        instance_networks(["name=a,ip=10.0.0.2"], ip="10.0.0.3")
    assert instance_networks([]) == []


def test_sdk_paths_and_bodies() -> None:
    seen: list[tuple[str, str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url.copy_with(scheme="http", netloc=b"h")), request.content))
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path.endswith("/networks") and request.method == "GET":
            return httpx.Response(200, json=[network().model_dump(mode="json")])
        if "/subnets" in request.url.path:
            body = subnet().model_dump(mode="json")
            return httpx.Response(
                200, json=[body] if request.method == "GET" and request.url.path.endswith("s") else body
            )
        if "/ports" in request.url.path:
            return httpx.Response(200, json=[])
        return httpx.Response(201, json=network().model_dump(mode="json"))

    api = AtollAPI("http://atoll.test", "team", transport=httpx.MockTransport(handler))
    assert api.networks() == [network()]
    assert api.create_network(NetworkCreate(name="web")) == network()
    assert api.inspect_network("web") == network()
    api.remove_network("web")
    assert api.subnets(network="web") == [subnet()]
    assert api.create_subnet(SubnetCreate(network="web", cidr="10.0.0.0/24")) == subnet()
    assert api.ports(instance="i1") == []
    assert [(m, u, b) for m, u, b in seen] == [
        ("GET", "http://h/v1/projects/team/networks", b""),
        ("POST", "http://h/v1/projects/team/networks", b'{"name":"web"}'),
        ("GET", "http://h/v1/projects/team/networks/web", b""),
        ("DELETE", "http://h/v1/projects/team/networks/web", b""),
        ("GET", "http://h/v1/projects/team/subnets?network=web", b""),
        ("POST", "http://h/v1/projects/team/subnets", b'{"cidr":"10.0.0.0/24","network":"web"}'),
        ("GET", "http://h/v1/projects/team/ports?instance=i1", b""),
    ]
    bad = AtollAPI(
        "http://atoll.test", transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"x": 1}))
    )
    with pytest.raises(AtollError, match="unexpected answer to GET /v1/projects/default/networks/x"):
        bad.inspect_network("x")
