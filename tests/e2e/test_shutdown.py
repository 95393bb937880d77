"""An orderly stop of `atoll up` (SIGTERM, SIGINT): the agent is closed, so the links of an instance
removed just before are gone when the process exits (not left to the next start), the process exits 0,
and containers keep running, through the orderly stop and through a kill -9."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cloud import Cloud
from tests.e2e.test_survival import alive


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def links(cloud: Cloud) -> set[str]:
    return {n for n in os.listdir("/sys/class/net") if n.startswith(cloud.net_prefix)}


def namespaces(cloud: Cloud) -> set[str]:
    netns = cloud.base / "run" / "netns"
    return {p.name for p in netns.iterdir()} if netns.is_dir() else set()


def stop_with(cloud: Cloud, sig: signal.Signals) -> int:
    assert cloud.proc is not None
    started = time.monotonic()
    cloud.proc.send_signal(sig)
    try:
        code = cloud.proc.wait(20)
        print(f"atoll up stopped on {sig.name} in {time.monotonic() - started:.2f} s")
    except subprocess.TimeoutExpired:
        cloud.kill9()
        raise AssertionError(f"atoll up did not stop within 20 s of {sig.name}") from None
    cloud.proc = None
    return code


def host_states(cloud: Cloud) -> list[str]:
    with contextlib.closing(sqlite3.connect(cloud.data_dir / "atoll.db")) as db:
        return [state for (state,) in db.execute("SELECT state FROM hosts")]


def log_of(cloud: Cloud) -> str:
    return Path(cloud.base / "atoll-up.log").read_text()


@pytest.fixture
def restarted(fresh_cloud: Cloud) -> Iterator[Cloud]:
    """The cloud, up again after the test if the test left it stopped: its teardown removes the
    instances through the API (a failed assertion would otherwise leave a container running)."""
    yield fresh_cloud
    if fresh_cloud.proc is None:
        fresh_cloud.start()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_in_order_and_containers_survive(restarted: Cloud, sig: signal.Signals) -> None:
    cloud = restarted
    ok(cloud.cli("network", "create", "stopnet", "--subnet", "10.227.41.0/24"))
    ok(cloud.cli("run", "-d", "--name", "keeper", "--network", "stopnet", "busybox", "sleep", "3600"))
    keeper = cloud.api().inspect_instance("keeper")
    kept_links, kept_netns = links(cloud), namespaces(cloud)
    assert keeper.id in kept_netns and kept_links

    # On a network of its own, the removed instance's bridge lingers after it (dataplane.LINGER).
    ok(cloud.cli("network", "create", "gonenet", "--subnet", "10.227.42.0/24"))
    ok(cloud.cli("run", "-d", "--name", "gone", "--network", "gonenet", "busybox", "sleep", "3600"))
    gone = cloud.api().inspect_instance("gone").id
    ok(cloud.cli("rm", "-f", "gone"))  # answers before its links are deleted (release(defer=True))
    pending = links(cloud) - kept_links
    assert pending, "the removed instance's bridge was already gone: nothing was pending at the stop"

    assert stop_with(cloud, sig) == 0, log_of(cloud)[-3000:]
    # At exit, before any restart: the removal was finished by the stop, not left to the next start.
    assert links(cloud) == kept_links
    assert namespaces(cloud) == kept_netns and gone not in namespaces(cloud)
    assert "stopped; containers keep running" in log_of(cloud)
    assert alive(keeper.pid), "a container died with an orderly stop"
    assert host_states(cloud) == ["offline"]  # the controller's record of this host, closed

    cloud.start()
    api = cloud.api()
    again = api.inspect_instance("keeper")
    assert (again.status, again.pid) == ("running", keeper.pid)  # adopted, not restarted
    assert api.hosts()[0].state == "ready"

    cloud.kill9()
    assert alive(keeper.pid), "a container died with kill -9 of the control plane"
    cloud.start()
    assert cloud.api().inspect_instance("keeper").pid == keeper.pid
    ok(cloud.cli("rm", "-f", "keeper"))
    ok(cloud.cli("network", "rm", "stopnet"))
    ok(cloud.cli("network", "rm", "gonenet"))
