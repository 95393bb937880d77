"""Restart policies, counted, with back-off; a user's stop wins over every policy."""

from __future__ import annotations

import time

from atoll.schemas import RestartPolicyWire
from tests.e2e.cloud import Cloud
from tests.e2e.helpers import output, run, wait_for


def test_on_failure_restarts_up_to_max_then_stays_exited(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(
        api,
        "sh",
        "-c",
        "echo run; exit 2",
        restart_policy=RestartPolicyWire(name="on-failure", max_retries=2),
    )
    wait_for(
        lambda: api.inspect_instance(ref).restart_count == 2 and api.inspect_instance(ref).status == "exited"
    )
    time.sleep(1)
    inst = api.inspect_instance(ref)
    assert (inst.status, inst.exit_code, inst.restart_count) == ("exited", 2, 2)
    assert output(api, ref)[1] == b"run\n" * 3


def test_on_failure_does_not_restart_a_success(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "true", restart_policy=RestartPolicyWire(name="on-failure"))
    api.wait_instance(ref)
    time.sleep(0.5)
    assert api.inspect_instance(ref).restart_count == 0


def test_always_restarts_with_back_off_until_stopped(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "true", restart_policy=RestartPolicyWire(name="always"))
    wait_for(lambda: api.inspect_instance(ref).restart_count >= 3, what="three restarts")
    # Back-off doubles from 100 ms: within 2 s there are only a handful of restarts, not hundreds.
    time.sleep(1.5)
    assert api.inspect_instance(ref).restart_count < 8
    api.stop_instance(ref, timeout=1)
    count = api.inspect_instance(ref).restart_count
    time.sleep(1.5)
    inst = api.inspect_instance(ref)
    assert inst.status == "exited" and inst.restart_count == count


def test_unless_stopped_restarts_a_crash(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "sh", "-c", "sleep 0.2; exit 1", restart_policy=RestartPolicyWire(name="unless-stopped"))
    wait_for(lambda: api.inspect_instance(ref).restart_count >= 1)
    api.stop_instance(ref, timeout=1)
    assert api.inspect_instance(ref).status == "exited"


def test_no_policy_means_no_restart(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "sh", "-c", "exit 1")
    api.wait_instance(ref)
    time.sleep(0.5)
    assert api.inspect_instance(ref).restart_count == 0
