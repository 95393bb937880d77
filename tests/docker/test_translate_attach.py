"""The create translation of networks, mounts and published ports (pure; no cloud)."""

from __future__ import annotations

import pytest

from atoll.api.docker.create import instance_create
from atoll.api.docker.http import DockerError
from tests.docker.test_translate import body


def test_default_mode_joins_the_bridge_network_and_none_has_no_nic() -> None:
    assert [n.network for n in instance_create(body(), "").networks] == ["bridge"]
    none = body(HostConfig_NetworkMode="none", NetworkingConfig={})
    assert instance_create(none, "").networks == []


def test_endpoints_give_ip_aliases_and_several_networks() -> None:
    req = instance_create(
        body(
            HostConfig_NetworkMode="front",
            NetworkingConfig={
                "EndpointsConfig": {
                    "back": {"Aliases": ["db"]},
                    "front": {"IPAMConfig": {"IPv4Address": "10.9.0.7"}, "Aliases": ["web"]},
                }
            },
        ),
        "",
    )
    assert [(n.network, n.ip, n.aliases) for n in req.networks] == [
        ("front", "10.9.0.7", ["web"]),
        ("back", None, ["db"]),
    ]


def test_ports_mounts_and_tmpfs() -> None:
    req = instance_create(
        body(
            ExposedPorts={"9000/udp": {}},
            Volumes={"/anon": {}},
            HostConfig_PortBindings={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
            HostConfig_PublishAllPorts=True,
            HostConfig_Binds=["data:/data:ro", "/srv:/srv"],
            HostConfig_Tmpfs={"/run/t": "size=1m,mode=1777"},
            HostConfig_Mounts=[{"Type": "volume", "Source": "v2", "Target": "/v2", "ReadOnly": True}],
        ),
        "",
    )
    assert [(p.container_port, p.protocol, p.host_ip, p.host_port) for p in req.publish] == [
        (80, "tcp", "127.0.0.1", 8080),
        (9000, "udp", None, None),
    ]
    assert req.publish_all
    got = [(m.type, m.source, m.destination, m.read_only) for m in req.mounts]
    assert got == [
        ("volume", "data", "/data", True),
        ("bind", "/srv", "/srv", False),
        ("volume", "v2", "/v2", True),
        ("tmpfs", "", "/run/t", False),
        ("volume", "", "/anon", False),
    ]
    tmpfs = req.mounts[3]
    assert (tmpfs.tmpfs_size, tmpfs.tmpfs_mode) == (1 << 20, 0o1777)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"HostConfig_PortBindings": {"80/tcp": [{"HostPort": "8000-8010"}]}},
            "HostConfig.PortBindings.80/tcp",
        ),
        ({"HostConfig_Tmpfs": {"/t": "exec"}}, "HostConfig.Tmpfs./t"),
        ({"HostConfig_NetworkMode": "container:abc"}, "HostConfig.NetworkMode"),
        (
            {"NetworkingConfig": {"EndpointsConfig": {"n": {"IPAMConfig": {"IPv6Address": "::1"}}}}},
            "IPv6Address",
        ),
    ],
)
def test_refused_attachments_name_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(DockerError) as e:
        instance_create(body(**change), "")
    assert e.value.status == 400 and field in e.value.message
