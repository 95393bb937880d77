"""Docker networks and publishing through Atoll's Docker API, with the real docker CLI and docker-py."""

from __future__ import annotations

import json
import time

import docker
import httpx

from tests.docker.conftest import DockerCLI
from tests.e2e.cloud import free_port


def _inspect(cli: DockerCLI, kind: str, name: str) -> dict:  # type: ignore[type-arg]
    out = json.loads(cli.ok(kind, "inspect", name))
    assert isinstance(out, list) and len(out) == 1
    return out[0]  # type: ignore[no-any-return]


def test_network_create_ls_inspect_rm(cli: DockerCLI) -> None:
    net_id = cli.ok(
        "network", "create", "--driver", "bridge", "--subnet", "10.213.5.0/24", "--gateway", "10.213.5.254",
        "--ip-range", "10.213.5.64/26", "--label", "team=a", "--attachable", "--internal", "dn-a",
    ).strip()  # fmt: skip
    assert len(net_id) == 64
    net = _inspect(cli, "network", "dn-a")
    assert net["Id"] == net_id and net["Name"] == "dn-a" and net["Driver"] == "bridge"
    assert net["Scope"] == "local" and net["Internal"] and net["Attachable"] and not net["EnableIPv6"]
    assert net["IPAM"] == {
        "Driver": "default",
        "Options": {},
        "Config": [{"Subnet": "10.213.5.0/24", "Gateway": "10.213.5.254", "IPRange": "10.213.5.64/26"}],
    }
    assert net["Labels"] == {"team": "a"} and net["Containers"] == {}
    names = cli.ok("network", "ls", "--format", "{{.Name}} {{.Driver}}").split("\n")
    for want in ("bridge bridge", "host host", "none null", "dn-a bridge"):
        assert want in names
    assert cli.ok("network", "ls", "-q", "--filter", "label=team=a").strip() == net_id[:12]
    assert cli.ok("network", "ls", "--format", "{{.Name}}", "--filter", "type=custom").split() == ["dn-a"]
    dup = cli.run("network", "create", "dn-a")
    assert dup.returncode != 0 and "already exists" in dup.stderr
    bad = cli.run("network", "create", "--driver", "macvlan", "dn-b")
    assert bad.returncode != 0 and "Driver" in bad.stderr
    assert cli.run("network", "create", "--ipv6", "dn-b").returncode != 0
    assert cli.run("network", "rm", "host").returncode != 0
    # the container gets an address of the range, and the network lists it
    cid = cli.ok("run", "-d", "--network", "dn-a", "busybox", "sleep", "300").strip()
    try:
        ip = _inspect(cli, "container", cid)["NetworkSettings"]["Networks"]["dn-a"]["IPAddress"]
        assert ip.startswith("10.213.5.") and 64 <= int(ip.rsplit(".", 1)[1]) < 128
        members = _inspect(cli, "network", "dn-a")["Containers"]
        assert members[cid]["IPv4Address"] == f"{ip}/24"
        busy = cli.run("network", "rm", "dn-a")
        assert busy.returncode != 0 and "in use" in busy.stderr
        assert cli.run("network", "connect", "dn-a", cid).returncode != 0
    finally:
        cli.ok("rm", "-f", cid)
    assert cli.ok("network", "rm", "dn-a").strip() == "dn-a"
    assert cli.run("network", "inspect", "dn-a").returncode != 0


def test_containers_reach_each_other_by_name_and_alias(cli: DockerCLI) -> None:
    cli.ok("network", "create", "--subnet", "10.213.6.0/24", "dn-app")
    try:
        cli.ok(
            "run", "-d", "--name", "dn-db", "--network", "dn-app", "--network-alias", "database",
            "--ip", "10.213.6.50", "busybox", "sleep", "300",
        )  # fmt: skip
        db = _inspect(cli, "container", "dn-db")["NetworkSettings"]
        assert db["IPAddress"] == "10.213.6.50" and db["IPPrefixLen"] == 24
        endpoint = db["Networks"]["dn-app"]
        assert endpoint["IPAddress"] == "10.213.6.50" and endpoint["Gateway"] == "10.213.6.1"
        assert "database" in endpoint["Aliases"] and "dn-db" in endpoint["DNSNames"]
        for target in ("dn-db", "database", "10.213.6.50"):
            proc = cli.run(
                "run", "--rm", "--network", "dn-app", "busybox", "ping", "-c", "1", "-W", "5", target
            )
            assert proc.returncode == 0, (target, proc.stdout, proc.stderr)
            assert "10.213.6.50" in proc.stdout
    finally:
        cli.run("rm", "-f", "dn-db")
        cli.run("network", "rm", "dn-app")


def test_run_without_network_gets_an_address_on_bridge(cli: DockerCLI) -> None:
    out = cli.ok("run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show")
    bridge = _inspect(cli, "network", "bridge")
    subnet = bridge["IPAM"]["Config"][0]["Subnet"]
    prefix = subnet.rsplit(".", 1)[0] + "."
    assert prefix in out, (subnet, out)
    none = cli.ok("run", "--rm", "--network", "none", "busybox", "ip", "-4", "-o", "addr", "show")
    assert prefix not in none and "127.0.0.1" in none
    host = cli.run("run", "--rm", "--network", "host", "busybox", "true")
    assert host.returncode == 125 and "NetworkMode" in host.stderr


def _get(url: str) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_publish_p_serves_busybox_httpd_on_the_loopback(cli: DockerCLI) -> None:
    port = free_port()
    cid = cli.ok(
        "run", "-d", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
        "mkdir /www && echo hello-from-atoll > /www/index.html && httpd -f -p 80 -h /www",
    ).strip()  # fmt: skip
    try:
        assert _get(f"http://127.0.0.1:{port}/").text == "hello-from-atoll\n"
        assert cli.ok("port", cid).strip() == f"80/tcp -> 127.0.0.1:{port}"
        inspect = _inspect(cli, "container", cid)
        assert inspect["NetworkSettings"]["Ports"] == {
            "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
        }
        ps = cli.ok("ps", "--filter", f"id={cid}", "--format", "{{.Ports}}").strip()
        assert ps == f"127.0.0.1:{port}->80/tcp"
    finally:
        cli.ok("rm", "-f", cid)


def test_publish_all_and_docker_port(cli: DockerCLI) -> None:
    cid = cli.ok(
        "run", "-d", "-P", "--expose", "80", "busybox", "sh", "-c",
        "mkdir /www && echo all > /www/index.html && httpd -f -p 80 -h /www",
    ).strip()  # fmt: skip
    try:
        line = cli.ok("port", cid, "80/tcp").split("\n")[0]
        host_port = int(line.rsplit(":", 1)[1])
        assert _get(f"http://127.0.0.1:{host_port}/").text == "all\n"
    finally:
        cli.ok("rm", "-f", cid)


def test_dockerpy_networks(dockerpy: docker.DockerClient) -> None:
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.213.7.0/24")])
    net = dockerpy.networks.create("dn-py", driver="bridge", ipam=ipam, labels={"k": "v"})
    try:
        assert net.attrs["IPAM"]["Config"][0]["Subnet"] == "10.213.7.0/24"
        assert [n.name for n in dockerpy.networks.list(names=["dn-py"])] == ["dn-py"]
        c = dockerpy.containers.run("busybox", ["sleep", "300"], detach=True, network="dn-py")
        try:
            c.reload()
            assert c.attrs["NetworkSettings"]["Networks"]["dn-py"]["IPAddress"].startswith("10.213.7.")
            net.reload()
            assert c.id in net.attrs["Containers"]
        finally:
            c.remove(force=True)
    finally:
        net.remove()
    dockerpy.networks.create("dn-py2")
    pruned = dockerpy.networks.prune()
    assert "dn-py2" in pruned["NetworksDeleted"] and "bridge" not in pruned["NetworksDeleted"]
