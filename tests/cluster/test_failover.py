"""Host failure with real agents in host namespaces (``netns_hosts``): a host that dies (its agent
``kill -9``-ed and its underlay cut, so its containers keep running but nobody can reach them) has its
restartable instances started on another host with the same addresses and published ports; when it
comes back it is fenced (its stale copies killed and removed) before it is ``ready`` again."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from atoll.schemas import (
    InstanceCreate,
    InstanceNetwork,
    NetworkCreate,
    PublishRequest,
    RestartPolicyWire,
    SubnetSpec,
)
from atoll.schemas_volumes import MountRequest

from .netns_hosts import NetnsCluster, create_on, reaches, runc_ids
from .procs import HEARTBEAT_TIMEOUT, started


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    yield from started(NetnsCluster(base=tmp_path_factory.mktemp("atoll-test-failover")), "alpha", "beta")


def on_net(name: str, **kw: object) -> InstanceCreate:
    return InstanceCreate(
        image="busybox",
        name=name,
        command=["sleep", "600"],
        networks=[InstanceNetwork(network="fo")],
        **kw,  # type: ignore[arg-type]
    )


def wait_for(what: str, check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not in {timeout} s: {what}")


def test_restartable_instances_fail_over_and_the_returning_host_is_fenced(hosts: NetnsCluster) -> None:
    alpha, beta = hosts.agents
    api = hosts.api()
    api.create_network(NetworkCreate(name="fo", subnets=[SubnetSpec(cidr="10.63.0.0/24")]))
    try:
        client = create_on(hosts, beta, on_net("client"))
        keeper = create_on(
            hosts,
            alpha,
            on_net(
                "keeper",
                restart_policy=RestartPolicyWire(name="always"),
                publish=[PublishRequest(container_port=80, host_port=18080)],
            ),
        )
        plain = create_on(hosts, alpha, on_net("plain"))
        # Restartable, but its data is in a local volume on alpha: it waits for alpha rather than
        # starting empty on beta.
        stored = create_on(
            hosts,
            alpha,
            on_net(
                "stored",
                restart_policy=RestartPolicyWire(name="always"),
                mounts=[MountRequest(source="fodata", destination="/d")],
            ),
        )
        assert hosts.cli("exec", "stored", "sh", "-c", "echo kept > /d/data").returncode == 0
        before = {i: api.inspect_instance(i) for i in (keeper, plain, stored)}
        assert reaches(hosts, client, "keeper")

        # The machine dies: its agent is gone and nobody reaches it (its containers still run in there).
        killed_at = time.monotonic()
        alpha.kill9()
        alpha.run("ip", "link", "set", "underlay", "down")
        hosts.wait_state(alpha, "down", timeout=HEARTBEAT_TIMEOUT * 5)

        def keeper_on_beta() -> bool:
            now = api.inspect_instance(keeper)
            return now.host == beta.host_id and now.status == "running"

        wait_for("keeper running on beta", keeper_on_beta)
        print(f"failover: running on beta {time.monotonic() - killed_at:.1f} s after the kill")
        moved = api.inspect_instance(keeper)
        assert [(n.ip, n.mac) for n in moved.networks] == [(n.ip, n.mac) for n in before[keeper].networks]
        assert [(p.host_port, p.container_port) for p in moved.published] == [(18080, 80)]
        assert reaches(hosts, client, "keeper") and reaches(hosts, client, moved.networks[0].ip)
        assert api.inspect_instance(plain).host == alpha.host_id, "no restart policy: it stays"
        assert (
            moved.move_note
            == "failed over from host alpha: its writable layer stayed there (started fresh from the image)"
        )
        waiting = api.inspect_instance(stored)
        assert waiting.host == alpha.host_id, "its data is on alpha: it stays"
        assert waiting.move_note.startswith(
            "not failed over from down host alpha: its data is there: volume 'fodata' at /d;"
        ), waiting.move_note
        stale = alpha.run("ls", f"/proc/{before[keeper].pid}")
        assert stale.returncode == 0, "the stale copy still runs on the cut-off host"

        # It comes back: fenced first (the stale keeper is killed and removed), then ready.
        alpha.run("ip", "link", "set", "underlay", "up")
        # Before the fence, the stale copy speaks through the tunnel with the moved instance's MAC: the
        # new host's bridge must not learn it there (the local port's entry is pinned, sticky).
        stale_ns = alpha.host.base / "run" / "netns" / keeper
        client_ip = api.inspect_instance(client).networks[0].ip
        subprocess.run(
            ["nsenter", f"--net={stale_ns}", "busybox", "ping", "-c", "2", "-W", "1", client_ip],
            capture_output=True,
            timeout=10,
        )
        hosts.restart_agent(alpha)
        back_at = time.monotonic()
        hosts.wait_state(alpha, "ready", timeout=30)
        print(f"fencing: ready {time.monotonic() - back_at:.1f} s after the agent restart")
        # Gone by the time the host is ready: removed by the controller's fence, or already by the
        # restarted agent's own first reconcile (it is no longer assigned there), whichever came first.
        assert f"host {alpha.host_id} is ready (fenced:" in hosts.controller_log.read_text()
        agent_log = alpha.log.read_text()
        assert f"fencing {keeper}" in agent_log or f"removing {keeper}: no longer assigned" in agent_log
        assert keeper not in runc_ids(alpha)
        assert plain in runc_ids(alpha)
        assert not (alpha.host.data_dir / "instances" / keeper).exists()
        assert api.inspect_instance(plain).pid == before[plain].pid, "what stayed assigned is adopted"
        back = api.inspect_instance(stored)
        assert (back.host, back.pid, back.move_note) == (alpha.host_id, before[stored].pid, "")
        assert hosts.cli("exec", "stored", "cat", "/d/data").stdout == "kept\n"
        assert reaches(hosts, client, "keeper") and reaches(hosts, client, "plain")
    finally:
        for inst in api.instances(all=True):
            api.remove_instance(inst.id, force=True)
        api.remove_network("fo")
        for v in api.volumes():
            api.remove_volume(v.name)
