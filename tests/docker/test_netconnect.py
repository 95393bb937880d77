"""`docker network connect/disconnect` against Atoll, with the real docker CLI and docker-py.

The docker-py cases follow the expectations of docker-py's own integration tests
(tests/integration/api_network_test.py and models_networks_test.py): connecting twice and
disconnecting twice fail, the network's ``Containers`` lists exactly the member, aliases and a fixed
IPv4 address show in the container's ``NetworkSettings.Networks``, a created container connected before
its start is a member once started.
"""

from __future__ import annotations

import json
from typing import Any

import docker
import docker.errors
import pytest

from tests.docker.conftest import DockerCLI


def _inspect(cli: DockerCLI, kind: str, name: str) -> dict[str, Any]:
    out = json.loads(cli.ok(kind, "inspect", name))
    assert isinstance(out, list) and len(out) == 1
    return out[0]  # type: ignore[no-any-return]


def _ping(cli: DockerCLI, container: str, target: str, *, tries: int = 3) -> bool:
    """One echo answered, in up to ``tries`` attempts (a loaded machine may lose the first)."""
    for _ in range(tries):
        if cli.run("exec", container, "ping", "-c", "1", "-W", "2", target).returncode == 0:
            return True
    return False


def test_run_on_one_network_then_connect_another(cli: DockerCLI) -> None:
    cli.ok("network", "create", "--subnet", "10.214.1.0/24", "nc-a")
    cli.ok("network", "create", "--subnet", "10.214.2.0/24", "nc-b")
    try:
        cli.ok("run", "-d", "--name", "nc-peer", "--network", "nc-b", "busybox", "sleep", "300")
        cli.ok("run", "-d", "--name", "nc-app", "--network", "nc-a", "busybox", "sleep", "300")
        assert not _ping(cli, "nc-app", "nc-peer", tries=1)

        cli.ok("network", "connect", "--alias", "front", "--ip", "10.214.2.40", "nc-b", "nc-app")
        app = _inspect(cli, "container", "nc-app")
        nets = app["NetworkSettings"]["Networks"]
        assert sorted(nets) == ["nc-a", "nc-b"]
        assert nets["nc-b"]["IPAddress"] == "10.214.2.40" and "front" in nets["nc-b"]["Aliases"]
        assert nets["nc-b"]["IPAMConfig"] == {"IPv4Address": "10.214.2.40"}
        assert nets["nc-a"]["IPAMConfig"] is None  # picked, not asked for
        members = _inspect(cli, "network", "nc-b")["Containers"]
        assert members[app["Id"]]["IPv4Address"] == "10.214.2.40/24"
        assert sorted(m["Name"] for m in members.values()) == ["nc-app", "nc-peer"]
        assert _ping(cli, "nc-app", "nc-peer") and _ping(cli, "nc-peer", "front")

        again = cli.run("network", "connect", "nc-b", "nc-app")
        assert again.returncode != 0 and "already connected" in again.stderr
        cli.ok("network", "disconnect", "nc-b", "nc-app")
        assert sorted(_inspect(cli, "container", "nc-app")["NetworkSettings"]["Networks"]) == ["nc-a"]
        assert app["Id"] not in _inspect(cli, "network", "nc-b")["Containers"]
        assert not _ping(cli, "nc-app", "10.214.2.2", tries=1)
        assert not _ping(cli, "nc-peer", "front", tries=1)
        gone = cli.run("network", "disconnect", "nc-b", "nc-app")
        assert gone.returncode != 0 and "not connected" in gone.stderr
        cli.ok("network", "disconnect", "--force", "nc-a", "nc-app")
        assert _inspect(cli, "container", "nc-app")["NetworkSettings"]["Networks"] == {}

        missing = cli.run("network", "connect", "nc-nope", "nc-app")
        assert missing.returncode != 0 and "not found" in missing.stderr
        assert cli.run("network", "connect", "nc-b", "nc-ghost").returncode != 0
        bad = cli.run("network", "connect", "--link", "nc-peer:x", "nc-b", "nc-peer")
        assert bad.returncode != 0 and "Links" in bad.stderr
        assert cli.run("network", "connect", "none", "nc-peer").returncode != 0
    finally:
        cli.run("rm", "-f", "nc-app", "nc-peer")
        cli.run("network", "rm", "nc-a", "nc-b")


def test_create_then_connect_before_start(cli: DockerCLI) -> None:
    cli.ok("network", "create", "--subnet", "10.214.3.0/24", "nc-c")
    cli.ok("network", "create", "--subnet", "10.214.4.0/24", "nc-d")
    try:
        cli.ok("run", "-d", "--name", "nc-d-peer", "--network", "nc-d", "busybox", "sleep", "300")
        cli.ok("create", "--name", "nc-late", "--network", "nc-c", "busybox", "sleep", "300")
        cli.ok("network", "connect", "nc-d", "nc-late")
        cli.ok("start", "nc-late")
        nets = _inspect(cli, "container", "nc-late")["NetworkSettings"]["Networks"]
        assert sorted(nets) == ["nc-c", "nc-d"]
        assert _ping(cli, "nc-late", "nc-d-peer")
        assert "eth1" in cli.ok("exec", "nc-late", "ip", "-o", "link")
    finally:
        cli.run("rm", "-f", "nc-late", "nc-d-peer")
        cli.run("network", "rm", "nc-c", "nc-d")


def test_docker_py_connect_and_disconnect(dockerpy: docker.DockerClient) -> None:
    api = dockerpy.api
    net = dockerpy.networks.create("nc-py", ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet="10.214.5.0/24", iprange="10.214.5.0/25")]
    ))  # fmt: skip
    container = api.create_container("busybox", "sleep 300")
    try:
        api.start(container)
        assert not api.inspect_network(net.id).get("Containers")
        api.connect_container_to_network(container, net.id)
        assert list(api.inspect_network(net.id)["Containers"]) == [container["Id"]]
        with pytest.raises(docker.errors.APIError):
            api.connect_container_to_network(container, net.id)
        api.disconnect_container_from_network(container, net.id, True)
        assert not api.inspect_network(net.id).get("Containers")
        with pytest.raises(docker.errors.APIError):
            api.disconnect_container_from_network(container, net.id, force=True)

        api.connect_container_to_network(container, net.id, aliases=["foo", "bar"])
        aliases = api.inspect_container(container)["NetworkSettings"]["Networks"]["nc-py"]["Aliases"]
        assert "foo" in aliases and "bar" in aliases
        api.disconnect_container_from_network(container, "nc-py")
        api.connect_container_to_network(container, "nc-py", ipv4_address="10.214.5.24")
        endpoint = api.inspect_container(container)["NetworkSettings"]["Networks"]["nc-py"]
        assert endpoint["IPAMConfig"]["IPv4Address"] == "10.214.5.24"
        api.disconnect_container_from_network(container, "nc-py")
        api.connect_container_to_network(container, "nc-py", mac_address="02:42:ac:11:00:02")
        endpoint = api.inspect_container(container)["NetworkSettings"]["Networks"]["nc-py"]
        assert endpoint["MacAddress"] == "02:42:ac:11:00:02"
        with pytest.raises(docker.errors.APIError) as err:
            api.connect_container_to_network(container, "bridge", links=[("x", "y")])
        assert "Links" in str(err.value)

        # models: connect a created container, then start it.
        later = dockerpy.containers.create("busybox", "sleep 300")
        try:
            net.connect(later)
            later.start()
            got = dockerpy.networks.get(net.id).containers
            assert sorted(c.id for c in got) == sorted([container["Id"], later.id])
            net.disconnect(later)
            assert [c.id for c in dockerpy.networks.get(net.id).containers] == [container["Id"]]
        finally:
            later.remove(force=True)
    finally:
        api.remove_container(container, force=True)
        net.remove()
