"""Docker networks reach the outside world, as on dockerd: through a router of their own with SNAT on
the cloud's external network (services/outbound.py). The outside is a namespace the test makes
(tests/e2e/test_routers.py), joined by a veth that is the external network's uplink; it has no route
anywhere else, so nothing leaves the machine, and it can only answer the router's address.

This module has a cloud of its own (the fixture is per module), whose external network exists before
the first Docker call, so the predefined ``bridge`` gets its router when it is made.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.docker.conftest import DockerCLI
from tests.e2e.cloud import Cloud
from tests.e2e.test_routers import OUTSIDE_IP, Outside, outside

__all__ = ["outside"]  # the fixture, used by name


def _ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip()


def _ping(cli: DockerCLI, container: str, target: str, *, tries: int = 3) -> bool:
    """One echo answered, in up to ``tries`` attempts (a loaded machine may lose the first)."""
    for _ in range(tries):
        if cli.run("exec", container, "ping", "-c", "1", "-W", "2", target).returncode == 0:
            return True
    return False


def _routers(cloud: Cloud) -> dict[str, Any]:
    return {r.name: r for r in cloud.api().routers()}


def _source_seen(cli: DockerCLI, outside: Outside, container: str) -> str:
    return outside.source_of_connection(
        lambda: cli.run("exec", container, "sh", "-c", f"echo hi | nc -w 2 {OUTSIDE_IP} 9999", timeout=10)
    )


def test_docker_networks_reach_the_outside(cloud: Cloud, cli: DockerCLI, outside: Outside) -> None:
    _ok(
        cloud.cli(
            "network", "create", "ext", "--external", "--subnet", "203.0.113.0/24", "--uplink", outside.uplink
        )
    )
    try:
        cli.ok("network", "create", "--subnet", "10.215.1.0/24", "ob-user")
        cli.ok("network", "create", "--internal", "--subnet", "10.215.2.0/24", "ob-inner")
        cli.ok("run", "-d", "--name", "ob-default", "busybox", "sleep", "300")  # the predefined bridge
        cli.ok("run", "-d", "--name", "ob-user", "--network", "ob-user", "busybox", "sleep", "300")
        cli.ok("run", "-d", "--name", "ob-inner", "--network", "ob-inner", "busybox", "sleep", "300")

        user_net = json.loads(cli.ok("network", "inspect", "ob-user"))[0]
        bridge_net = json.loads(cli.ok("network", "inspect", "bridge"))[0]
        routers = _routers(cloud)
        user_router = routers[f"docker-{user_net['Id'][:12]}"]
        assert f"docker-{bridge_net['Id'][:12]}" in routers
        assert len(routers) == 2  # none for the internal network
        assert user_router.interfaces[0].ip == "10.215.1.1"  # the subnet's gateway
        # The router is no member: inspect lists only containers.
        assert [m["Name"] for m in user_net["Containers"].values()] == ["ob-user"]

        assert _ping(cli, "ob-user", OUTSIDE_IP) and _ping(cli, "ob-default", OUTSIDE_IP)
        assert not _ping(cli, "ob-inner", OUTSIDE_IP, tries=1)
        assert _source_seen(cli, outside, "ob-user") == user_router.external_gateway.ip  # SNAT
        # Networks stay apart from each other: each has its own router.
        user_ip = user_net["Containers"][next(iter(user_net["Containers"]))]["IPv4Address"].split("/")[0]
        assert not _ping(cli, "ob-default", user_ip, tries=1)

        # Removing the network takes its router along; in use, it stays.
        busy = cli.run("network", "rm", "ob-user")
        assert busy.returncode != 0 and "in use" in busy.stderr
        assert user_router.name in _routers(cloud)
        cli.ok("rm", "-f", "ob-user")
        cli.ok("network", "rm", "ob-user")
        assert user_router.name not in _routers(cloud)
        assert not (cloud.base / "run" / "routers" / user_router.id).exists()
    finally:
        cli.run("rm", "-f", "ob-default", "ob-user", "ob-inner")
        cli.run("network", "rm", "ob-user", "ob-inner")
        api = cloud.api()
        for router in api.routers():  # the predefined bridge's router, then the external network
            for interface in router.interfaces:
                api.remove_router_interface(router.id, interface.subnet)
            api.remove_router(router.id)
        cloud.cli("network", "rm", "ext")
