"""Names on tenant networks end to end: `atoll up`, busybox instances asking the resolver the agent
serves at 127.0.0.11 in their namespaces, with busybox's own nslookup and ping.

No query leaves the machine: every network here names a DNS server at an address of its own that
nobody holds, so a name that is forwarded fails (SERVFAIL) inside the tenant network, and single-label
names are never forwarded at all.
"""

from __future__ import annotations

import subprocess

import dns.message
import dns.query
import dns.rcode

from atoll.agent.net.netns import run_in
from tests.e2e.cloud import Cloud
from tests.e2e.helpers import wait_for


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, (result.stdout.decode(), result.stderr.decode())
    return result.stdout.decode()


def network(cloud: Cloud, name: str, prefix: str, project: str = "default") -> None:
    """A network whose named DNS server (.250) does not exist: forwarding never leaves it."""
    args = ["--project", project, "network", "create", name, "--subnet", f"{prefix}.0/24"]
    ok(cloud.cli(*args, "--dns", f"{prefix}.250"))


def run_on(cloud: Cloud, name: str, *networks: str, project: str = "default") -> list[str]:
    args = ["--project", project, "run", "-d", "--name", name]
    for net in networks:
        args += ["--network", net]
    ok(cloud.cli(*args, "busybox", "sleep", "3600"))
    return [nic.ip for nic in cloud.api(project).inspect_instance(name).networks]


def lookup(cloud: Cloud, instance: str, name: str, project: str = "default") -> list[str]:
    """The addresses ``instance`` resolves ``name`` to, with busybox's nslookup; [] if none."""
    result = cloud.cli("--project", project, "exec", instance, "nslookup", "-type=a", name)
    out = result.stdout.decode()
    answers = out.split(f"Name:\t{name}")[1:] if result.returncode == 0 else []
    return sorted(line.split()[-1] for a in answers for line in a.splitlines() if line.startswith("Address"))


def test_instances_resolve_names_and_aliases_on_shared_networks(cloud: Cloud) -> None:
    network(cloud, "dns-front", "10.71.0")
    network(cloud, "dns-back", "10.72.0")
    network(cloud, "dns-side", "10.73.0")
    (web,) = run_on(cloud, "dns-web", "name=dns-front,alias=www")
    db_front, db_back = run_on(cloud, "dns-db", "dns-front", "name=dns-back,alias=store")
    (side,) = run_on(cloud, "dns-side", "dns-side")
    assert ok(cloud.cli("exec", "dns-web", "cat", "/etc/resolv.conf")) == "nameserver 127.0.0.11\n"

    assert lookup(cloud, "dns-web", "dns-db") == [db_front]  # the address on the shared network
    assert lookup(cloud, "dns-db", "www") == [web]  # an alias
    assert lookup(cloud, "dns-db", "dns-db") == sorted([db_front, db_back])  # on two networks: both
    assert lookup(cloud, "dns-web", "store") == []  # an alias on a network web is not on
    assert lookup(cloud, "dns-web", "dns-side") == []  # no network in common
    assert lookup(cloud, "dns-side", "dns-web") == []
    short_id = cloud.api().inspect_instance("dns-db").id[:12]
    assert lookup(cloud, "dns-web", short_id) == [db_front]
    # ping resolves through the same resolv.conf.
    ping = cloud.cli("exec", "dns-web", "ping", "-c", "1", "-W", "2", "dns-db")
    assert ping.returncode == 0 and db_front in ping.stdout.decode(), ping
    # Reverse lookups of tenant addresses are answered here.
    reverse = ok(cloud.cli("exec", "dns-web", "nslookup", db_front))
    assert "dns-db" in reverse
    # A name that is forwarded goes to the subnet's server, which does not exist: SERVFAIL, not a hang.
    # (busybox takes SERVFAIL as "try the next server" and reports a timeout, so ask from here.)
    netns = cloud.base / "run" / "netns" / cloud.api().inspect_instance("dns-web").id
    query = dns.message.make_query("example.invalid", "A")
    forwarded = run_in(netns, lambda: dns.query.udp(query, "127.0.0.11", timeout=10))
    assert forwarded.rcode() == dns.rcode.SERVFAIL
    assert side  # the side instance resolved nothing of the others, and they nothing of it


def test_names_follow_creation_removal_and_renames(cloud: Cloud) -> None:
    network(cloud, "dns-live", "10.74.0")
    run_on(cloud, "dns-live-a", "dns-live")
    assert lookup(cloud, "dns-live-a", "dns-live-b") == []
    (b,) = run_on(cloud, "dns-live-b", "name=dns-live,alias=cache")
    assert lookup(cloud, "dns-live-a", "dns-live-b") == [b]  # at once: the controller nudged the agent
    assert lookup(cloud, "dns-live-a", "cache") == [b]
    ok(cloud.cli("rm", "-f", "dns-live-b"))
    assert lookup(cloud, "dns-live-a", "dns-live-b") == []
    assert lookup(cloud, "dns-live-a", "cache") == []
    # A rename renames the name on the network; aliases stay.
    (d,) = run_on(cloud, "dns-live-d", "name=dns-live,alias=queue")
    ok(cloud.cli("rename", "dns-live-d", "dns-live-e"))
    assert lookup(cloud, "dns-live-a", "dns-live-e") == [d]
    assert lookup(cloud, "dns-live-a", "dns-live-d") == []
    assert lookup(cloud, "dns-live-a", "queue") == [d]
    # Stopped instances keep their names (and their addresses).
    (c,) = run_on(cloud, "dns-live-c", "dns-live")
    ok(cloud.cli("stop", "-t", "1", "dns-live-c"))
    assert lookup(cloud, "dns-live-a", "dns-live-c") == [c]


def test_projects_never_resolve_each_others_instances(cloud: Cloud) -> None:
    for project in ("dns-blue", "dns-green"):
        ok(cloud.cli("project", "create", project))
        network(cloud, "net", "10.75.0", project=project)  # the same name and CIDR in both
    (blue,) = run_on(cloud, "only-blue", "net", project="dns-blue")
    run_on(cloud, "asker", "net", project="dns-green")
    run_on(cloud, "asker", "net", project="dns-blue")
    assert lookup(cloud, "asker", "only-blue", project="dns-blue") == [blue]
    assert lookup(cloud, "asker", "only-blue", project="dns-green") == []


def test_an_agent_restart_restores_resolution(fresh_cloud: Cloud) -> None:
    cloud = fresh_cloud
    network(cloud, "dns-stay", "10.76.0")
    run_on(cloud, "stay-a", "dns-stay")
    (b,) = run_on(cloud, "stay-b", "name=dns-stay,alias=peer")
    assert lookup(cloud, "stay-a", "peer") == [b]
    netns = cloud.base / "run" / "netns" / cloud.api().inspect_instance("stay-a").id
    cloud.kill9()
    # The instances run on, but their resolver went with the agent: lookups fail at once.
    down = subprocess.run(
        ["nsenter", f"--net={netns}", "busybox", "nslookup", "peer", "127.0.0.11"],
        capture_output=True,
        timeout=30,
    )
    assert down.returncode != 0 and b"10.76.0" not in down.stdout
    cloud.start()
    wait_for(lambda: lookup(cloud, "stay-a", "peer") == [b], timeout=30, what="names to resolve again")
    assert lookup(cloud, "stay-b", "stay-a") != []
