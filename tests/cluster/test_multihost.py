"""A controller and two agents as separate processes, joined by token: placement across hosts, the
lifecycle through the controller, drain, heartbeat loss, refused tokens and certificates, and agents
that die without taking their containers with them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from atoll.agent.images.starter import busybox_rootfs_tar
from atoll.schemas import ImageConfigWire, InstanceCreate
from atoll.wire import pki, tokens

from .procs import HEARTBEAT_TIMEOUT, MultiHost, started


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiHost]:
    yield from started(MultiHost(base=tmp_path_factory.mktemp("atoll-test-cluster")), "alpha", "beta")


def run(c: MultiHost, name: str, *env: str, **kw: object) -> str:
    api = c.api()
    inst = api.create_instance(
        InstanceCreate(image="busybox", name=name, command=["sleep", "600"], env=list(env), **kw)  # type: ignore[arg-type]
    )
    api.start_instance(inst.id)
    return inst.id


def cleanup(c: MultiHost) -> None:
    api = c.api()
    for inst in api.instances(all=True):
        api.remove_instance(inst.id, force=True)


def test_hosts_join_and_report_capacity(cluster: MultiHost) -> None:
    hosts = cluster.api().cluster_hosts()
    assert sorted(h.name for h in hosts) == ["alpha", "beta"]
    for h in hosts:
        assert h.state == "ready" and h.runtime in ("runc", "crun")
        assert h.capacity is not None and h.capacity.cpu_millis == (os.cpu_count() or 1) * 1000
        assert h.heartbeat_age is not None and h.heartbeat_age < HEARTBEAT_TIMEOUT
    ls = cluster.cli("host", "ls")
    assert ls.returncode == 0 and "alpha" in ls.stdout and "beta" in ls.stdout, ls.stderr


def test_placement_across_hosts_and_lifecycle_through_the_controller(cluster: MultiHost) -> None:
    api = cluster.api()
    try:
        a = run(cluster, "web-a", "affinity:container!=web-*")
        b = run(cluster, "web-b", "affinity:container!=web-*")
        placed = {api.inspect_instance(a).host, api.inspect_instance(b).host}
        assert placed == {h.host_id for h in cluster.agents}, "anti-affinity put one on each host"
        err = cluster.cli(
            "run", "-d", "--name", "web-c", "-e", "affinity:container!=web-*", "busybox", "true"
        )
        assert err.returncode != 0
        assert "no host fits: affinity container!=web-* rejected 2 hosts" in err.stderr
        for ref in (a, b):
            out = cluster.cli("exec", ref, "sh", "-c", "echo from $(hostname)")
            assert out.returncode == 0 and out.stdout == f"from {ref[:12]}\n", out.stderr
        echo = run(cluster, "echo", "affinity:container==web-b")
        assert api.inspect_instance(echo).host == api.inspect_instance(b).host
        logs = cluster.cli("logs", "web-a")
        assert logs.returncode == 0
        assert cluster.cli("stop", "-t", "1", "web-a").returncode == 0
        assert api.inspect_instance(a).status == "exited"
        assert cluster.cli("start", "web-a").returncode == 0
        assert api.inspect_instance(a).status == "running"
    finally:
        cleanup(cluster)


def test_logs_come_from_the_instances_host(cluster: MultiHost) -> None:
    api = cluster.api()
    try:
        for agent in cluster.agents:
            other = next(x for x in cluster.agents if x is not agent)
            api.drain_host(other.host_id)
            try:
                inst = api.create_instance(
                    InstanceCreate(
                        image="busybox", name=f"say-{agent.name}", command=["echo", f"hi {agent.name}"]
                    )
                )
                api.start_instance(inst.id)
            finally:
                api.undrain_host(other.host_id)
            assert api.inspect_instance(inst.id).host == agent.host_id
            deadline = time.monotonic() + 20
            while api.inspect_instance(inst.id).status != "exited" and time.monotonic() < deadline:
                time.sleep(0.1)
            out = cluster.cli("logs", inst.id)
            assert out.stdout == f"hi {agent.name}\n", out.stderr
    finally:
        cleanup(cluster)


def test_drain_stops_placement(cluster: MultiHost) -> None:
    alpha, beta = cluster.agents
    assert cluster.cli("host", "drain", "alpha").returncode == 0
    try:
        assert cluster.host(alpha.host_id).state == "draining"
        ids = [run(cluster, f"d{i}") for i in range(3)]
        assert {cluster.api().inspect_instance(i).host for i in ids} == {beta.host_id}
        assert cluster.host(beta.host_id).instances == 3
    finally:
        assert cluster.cli("host", "undrain", "alpha").returncode == 0
        cleanup(cluster)
    assert cluster.host(alpha.host_id).state == "ready"


def test_bad_tokens_are_refused(cluster: MultiHost, tmp_path: Path) -> None:
    def join(token: str, name: str) -> str:
        out = cluster.cli(
            "join", token, "--no-start", "--data-dir", str(tmp_path / name), "--listen", "127.0.0.1:1"
        )
        assert out.returncode != 0
        return out.stderr

    api = cluster.api()
    real = tokens.decode(api.create_join_token(60).token)
    forged = tokens.JoinToken(real.address, real.ca_fingerprint, tokens.new_secret()).encode()
    assert "forged" in join(forged, "forged")
    other_ca = tokens.JoinToken(real.address, "sha256:" + "0" * 64, real.secret).encode()
    assert "fingerprint" in join(other_ca, "mitm")
    expired = api.create_join_token(0.2).token
    time.sleep(0.5)
    assert "expired" in join(expired, "late")
    assert "token:" in join("atoll-join-garbage", "garbage")
    # The genuine token still works once, and only once.
    ok = cluster.cli(
        "join", real.encode(), "--no-start", "--data-dir", str(tmp_path / "ok"), "--listen", "127.0.0.1:1"
    )
    assert ok.returncode == 0, ok.stderr
    assert "already used" in join(real.encode(), "again")
    joined = (tmp_path / "ok" / "host-id").read_text().strip()
    assert cluster.cli("host", "rm", joined).returncode == 0


def test_a_host_certificate_cannot_speak_for_another_host(cluster: MultiHost) -> None:
    alpha, beta = cluster.agents
    cdir = alpha.host.data_dir / "cluster"
    ctx = pki.Identity(key=cdir / "host.key", cert=cdir / "host.crt", ca=cdir / "ca.crt").client_context()
    with httpx.Client(verify=ctx) as client:
        as_beta = client.post(
            f"https://127.0.0.1:{cluster.cluster_port}/rpc/assignments",
            content=f'{{"host_id": "{beta.host_id}"}}',
            extensions={"sni_hostname": pki.CONTROLLER_NAME},
        )
        assert as_beta.status_code == 403 and f"belongs to host {alpha.host_id}" in as_beta.text
        # And an agent's API admits the controller only, not a fellow host.
        with pytest.raises(httpx.HTTPError):
            client.post(
                f"https://{beta.listen}/rpc/image_present",
                content=b'{"image_id": "x"}',
                extensions={"sni_hostname": pki.host_dns_name(beta.host_id)},
            )
    no_cert = httpx.post(
        f"https://127.0.0.1:{cluster.cluster_port}/rpc/assignments",
        content=f'{{"host_id": "{alpha.host_id}"}}',
        verify=False,
    )
    assert no_cert.status_code == 401


def test_killed_agent_leaves_containers_running_and_readopts_them(cluster: MultiHost) -> None:
    alpha, beta = cluster.agents
    api = cluster.api()
    api.drain_host(beta.host_id)
    try:
        inst = run(cluster, "survivor")
    finally:
        api.undrain_host(beta.host_id)
    before = api.inspect_instance(inst)
    assert before.host == alpha.host_id and before.pid > 0
    alpha.kill9()
    cluster.wait_state(alpha, "down", timeout=HEARTBEAT_TIMEOUT * 5)
    assert os.path.exists(f"/proc/{before.pid}"), "the container outlived its agent"
    unreachable = cluster.cli("exec", "survivor", "true")
    assert unreachable.returncode != 0 and f"host {alpha.host_id} is not connected" in unreachable.stderr
    # Nothing new goes to a down host.
    api.drain_host(beta.host_id)
    try:
        err = cluster.cli("run", "-d", "busybox", "true")
        assert err.returncode != 0 and "state down rejected 1 host" in err.stderr
    finally:
        api.undrain_host(beta.host_id)
    cluster.restart_agent(alpha)
    cluster.wait_state(alpha, "ready")
    after = api.inspect_instance(inst)
    assert after.status == "running" and after.pid == before.pid
    out = cluster.cli("exec", "survivor", "echo", "adopted")
    assert out.returncode == 0 and out.stdout == "adopted\n", out.stderr
    cleanup(cluster)


def test_controller_restart_keeps_workloads_and_hosts(cluster: MultiHost) -> None:
    api = cluster.api()
    ids = [run(cluster, f"keep{i}", "affinity:container!=keep*") for i in range(2)]
    pids = {i: api.inspect_instance(i).pid for i in ids}
    brief = api.create_instance(
        InstanceCreate(image="busybox", name="brief", command=["sh", "-c", "sleep 2; exit 7"])
    )
    api.start_instance(brief.id)
    assert cluster.controller is not None
    os.killpg(cluster.controller.pid, 9)
    cluster.controller.wait()
    for pid in pids.values():
        assert os.path.exists(f"/proc/{pid}"), "workloads outlive the controller"
    time.sleep(3)  # "brief" ends while nobody is there to hear it
    cluster.start_controller()
    for agent in cluster.agents:
        cluster.wait_state(agent, "ready")
    deadline = time.monotonic() + 20
    while api.inspect_instance(brief.id).status != "exited" and time.monotonic() < deadline:
        time.sleep(0.1)
    ended = api.inspect_instance(brief.id)
    assert (ended.status, ended.exit_code) == ("exited", 7), "an exit during the outage is still recorded"
    for i in ids:
        assert api.inspect_instance(i).pid == pids[i]
        out = cluster.cli("exec", i, "echo", "still here")
        assert out.returncode == 0 and out.stdout == "still here\n", out.stderr
    cleanup(cluster)


def test_an_image_is_copied_to_the_host_that_needs_it(cluster: MultiHost, tmp_path: Path) -> None:
    api = cluster.api()
    rootfs = tmp_path / "rootfs.tar"
    busybox_rootfs_tar(rootfs)
    with rootfs.open("rb") as f:
        image = api.build_image(
            f, tag="copied:1", config=ImageConfigWire(cmd=["sh"], env=["PATH=/bin"], labels={"copy": "me"})
        )
    try:
        first = api.create_instance(InstanceCreate(image="copied:1", name="first", command=["sleep", "600"]))
        holder = next(a for a in cluster.agents if a.host_id == first.host)
        other = next(a for a in cluster.agents if a is not holder)
        api.drain_host(holder.host_id)
        try:
            second = api.create_instance(
                InstanceCreate(image="copied:1", name="second", command=["sleep", "600"])
            )
        finally:
            api.undrain_host(holder.host_id)
        assert second.host == other.host_id
        api.start_instance(second.id)
        out = cluster.cli("exec", "second", "sh", "-c", "echo $PATH")
        assert out.returncode == 0 and out.stdout == "/bin\n", out.stderr
        assert f"copied image {image.id[:19]}" in cluster.controller_log.read_text()
    finally:
        cleanup(cluster)
        api.remove_image("copied:1")
