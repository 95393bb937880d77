"""``atoll host evacuate``: three real agents in host namespaces (``netns_hosts``). Instances on an overlay
network move off a host by cold migration (writable layer copied, same id, name, IP and MAC) while an
instance on a third host keeps reaching them by name; an instance with a local volume is refused
unless forced; ``undrain`` reopens the host."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from atoll.schemas import InstanceCreate, InstanceNetwork, NetworkCreate, RestartPolicyWire, SubnetSpec
from atoll.schemas_volumes import MountRequest

from .netns_hosts import NetnsCluster, create_on, reaches, runc_ids
from .procs import started


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    yield from started(
        NetnsCluster(base=tmp_path_factory.mktemp("atoll-test-evacuate")), "alpha", "beta", "gamma"
    )


def busy(name: str, script: str, **kw: object) -> InstanceCreate:
    return InstanceCreate(
        image="busybox",
        name=name,
        command=["sh", "-c", script],
        networks=[InstanceNetwork(network="evac")],
        **kw,  # type: ignore[arg-type]
    )


def test_evacuate_moves_instances_with_their_files_and_addresses(hosts: NetnsCluster) -> None:
    alpha, beta, gamma = hosts.agents
    api = hosts.api()
    api.create_network(NetworkCreate(name="evac", subnets=[SubnetSpec(cidr="10.62.0.0/24")]))
    try:
        client = create_on(hosts, gamma, busy("client", "sleep 600"))
        web = create_on(
            hosts,
            alpha,
            busy(
                "web",
                "echo before-the-move > /state.txt; exec sleep 600",
                restart_policy=RestartPolicyWire(name="always"),
            ),
        )
        idle = create_on(hosts, alpha, busy("idle", "sleep 600"))
        assert hosts.cli("exec", "idle", "sh", "-c", "echo idle-file > /idle.txt").returncode == 0
        assert hosts.cli("stop", "-t", "1", "idle").returncode == 0
        stored = create_on(
            hosts,
            alpha,
            busy(
                "stored",
                "dd if=/dev/urandom of=/blob bs=1M count=16 2>/dev/null; md5sum /blob > /blob.md5; sleep 600",
                mounts=[MountRequest(source="evacdata", destination="/d")],
            ),
        )
        before = {i: api.inspect_instance(i) for i in (web, idle, stored)}
        assert reaches(hosts, client, "web")

        # gamma is drained so that everything lands on beta: the client then reaches across hosts.
        api.drain_host(gamma.host_id)
        try:
            out = hosts.cli("host", "evacuate", "alpha", timeout=180)
        finally:
            api.undrain_host(gamma.host_id)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "not moved: stored" in out.stderr and "volume 'evacdata' at /d" in out.stderr
        assert "--force" in out.stderr
        assert "web" in out.stdout and "idle" in out.stdout and " ms" in out.stdout
        print(out.stdout)
        assert hosts.host(alpha.host_id).state == "draining"

        for ref in (web, idle):
            now = api.inspect_instance(ref)
            assert now.host == beta.host_id
            assert (now.id, now.name) == (before[ref].id, before[ref].name)
            assert [(n.ip, n.mac) for n in now.networks] == [(n.ip, n.mac) for n in before[ref].networks]
        assert api.inspect_instance(web).status == "running"
        assert api.inspect_instance(idle).status == "exited"
        state = hosts.cli("exec", "web", "cat", "/state.txt")
        assert state.stdout == "before-the-move\n", state.stderr
        assert reaches(hosts, client, "web") and reaches(hosts, client, before[web].networks[0].ip)
        looked_up = hosts.cli("exec", client, "nslookup", "web", "127.0.0.11")
        assert before[web].networks[0].ip in looked_up.stdout
        assert hosts.cli("start", "idle").returncode == 0
        assert hosts.cli("exec", "idle", "cat", "/idle.txt").stdout == "idle-file\n"
        assert api.inspect_instance(stored).host == alpha.host_id

        # Forced: the instance moves, its volume's data does not (and the answer says so).
        api.drain_host(gamma.host_id)
        try:
            forced = api.evacuate_host("alpha", force=True)
        finally:
            api.undrain_host(gamma.host_id)
        assert [m.name for m in forced.moved] == ["stored"] and forced.unmoved == []
        assert forced.moved[0].left_behind == ["volume 'evacdata' at /d"]
        assert forced.moved[0].downtime_ms is not None and forced.moved[0].downtime_ms > 0
        assert api.inspect_instance(stored).status == "running"
        assert api.inspect_instance(stored).move_note == (
            "moved by evacuation from host alpha; without its data, which stayed on host alpha: "
            "volume 'evacdata' at /d (new volumes here start empty)"
        )
        assert api.inspect_instance(web).move_note == "moved by evacuation from host alpha"
        # The 16 MiB went over while it still ran; after the stop only the changes and the manifest did.
        assert forced.moved[0].precopy_bytes > 16 << 20 and forced.moved[0].delta_bytes < 1 << 20
        check = hosts.cli("exec", "stored", "md5sum", "-c", "/blob.md5")
        assert check.returncode == 0, check.stdout + check.stderr
        assert hosts.host(alpha.host_id).instances == 0
        assert not (alpha.host.data_dir / "instances").exists() or not any(
            (alpha.host.data_dir / "instances").iterdir()
        )
        assert before[web].id not in runc_ids(alpha) and before[web].id in runc_ids(beta)

        for line in hosts.controller_log.read_text().splitlines():
            if " moved " in line:
                print(line)  # the downtime and its phases, for docs/cluster.md
        assert hosts.cli("host", "undrain", "alpha").returncode == 0
        assert hosts.host(alpha.host_id).state == "ready"
    finally:
        for inst in api.instances(all=True):
            api.remove_instance(inst.id, force=True)
        api.remove_network("evac")
        for v in api.volumes():
            api.remove_volume(v.name)
