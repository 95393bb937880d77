"""End to end through the real REST API, the real agent and runc: the instance lifecycle."""

from __future__ import annotations

import time

import pytest

from atoll.client import AtollError
from atoll.schemas import ExecStart, InstanceCreate
from tests.e2e.cloud import Cloud
from tests.e2e.helpers import output, run


def test_exit_codes_are_returned_by_wait(cloud: Cloud) -> None:
    api = cloud.api()
    assert api.wait_instance(run(api, "true")).exit_code == 0
    assert api.wait_instance(run(api, "sh", "-c", "exit 3")).exit_code == 3
    assert api.wait_instance(run(api, "sh", "-c", "kill -USR1 $$")).exit_code == 128 + 10
    inst = api.inspect_instance(run(api, "sh", "-c", "exit 7"))
    api.wait_instance(inst.id)
    inst = api.inspect_instance(inst.id)
    assert (inst.status, inst.exit_code, inst.kind) == ("exited", 7, "container")
    assert inst.finished_at >= inst.started_at


def test_logs_separate_streams_with_timestamps_and_tail(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "sh", "-c", "echo out1; echo err1 >&2; echo out2; printf partial")
    api.wait_instance(ref)
    out = output(api, ref)
    assert out[1] == b"out1\nout2\npartial"
    assert out[2] == b"err1\n"
    stamped = output(api, ref, timestamps=True)[1].decode().splitlines()
    assert stamped[0].endswith(" out1") and stamped[0][:4].isdigit() and "T" in stamped[0].split()[0]
    assert output(api, ref, tail=1)[1] == b"partial"


def test_logs_follow_streams_until_exit(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done")
    t0 = time.monotonic()
    chunks = [data for _, data in api.logs(ref, follow=True)]
    assert b"".join(chunks) == b"line1\nline2\nline3\n"
    assert time.monotonic() - t0 >= 0.3  # it really followed a running instance


def test_stop_sends_sigterm_then_sigkill_after_the_timeout(cloud: Cloud) -> None:
    api = cloud.api()
    graceful = run(api, "sh", "-c", "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done")
    stubborn = run(api, "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done")
    time.sleep(0.3)
    assert api.stop_instance(graceful, timeout=10).exit_code == 0
    assert output(api, graceful)[1] == b"bye\n"
    t0 = time.monotonic()
    inst = api.stop_instance(stubborn, timeout=1)
    assert inst.exit_code == 137 and inst.status == "exited"
    assert 0.9 <= time.monotonic() - t0 < 10


def test_kill_delivers_any_signal(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "sh", "-c", "trap 'echo got-usr1; exit 4' USR1; while true; do sleep 0.1; done")
    time.sleep(0.3)
    api.kill_instance(ref, signal="SIGUSR1")
    assert api.wait_instance(ref).exit_code == 4
    ref = run(api, "sleep", "60")
    api.kill_instance(ref, signal="KILL")
    assert api.wait_instance(ref).exit_code == 137


def test_start_stop_start_keeps_the_writable_layer(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "sh", "-c", "echo $$ >> /state; cat /state | wc -l")
    api.wait_instance(ref)
    api.start_instance(ref)
    api.wait_instance(ref)
    assert output(api, ref)[1].split() == [b"1", b"2"]


def test_restart_instance(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "sleep", "60")
    first = api.inspect_instance(ref).pid
    inst = api.restart_instance(ref, timeout=1)
    assert inst.status == "running" and inst.pid != first
    api.remove_instance(ref, force=True)


def test_remove_requires_force_while_running(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "sleep", "60")
    with pytest.raises(AtollError) as err:
        api.remove_instance(ref)
    assert err.value.status == 409
    api.remove_instance(ref, force=True)
    with pytest.raises(AtollError) as err:
        api.inspect_instance(ref)
    assert err.value.status == 404
    assert not (cloud.data_dir / "instances" / ref).exists()


def test_exec_returns_exit_code_and_output(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "sleep", "60", env=["GREETING=hello"])
    time.sleep(0.2)
    with api.exec(ref, ExecStart(args=["sh", "-c", "echo $GREETING; echo oops >&2; exit 5"])) as session:
        frames = list(session.output())
        assert session.wait() == 5
    assert b"".join(d for s, d in frames if s == 1) == b"hello\n"
    assert b"".join(d for s, d in frames if s == 2) == b"oops\n"
    with api.exec(ref, ExecStart(args=["cat"], stdin=True)) as session:
        session.send_stdin(b"piped\n")
        session.close_stdin()
        assert b"".join(d for _, d in session.output()) == b"piped\n"
        assert session.wait() == 0
    with api.exec(ref, ExecStart(args=["sh", "-c", "tty; echo $TERM"], tty=True)) as session:
        text = b"".join(d for _, d in session.output())
        assert session.wait() == 0
    assert b"/dev/pts/" in text
    with api.exec(ref, ExecStart(args=["no-such-binary"])) as session:
        list(session.output())
        assert session.wait() in (126, 127)
    api.remove_instance(ref, force=True)


def test_exec_into_a_stopped_instance_is_refused(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "true")
    api.wait_instance(ref)
    with pytest.raises(AtollError):
        api.exec(ref, ExecStart(args=["true"])).wait()


def test_missing_executable_is_a_clear_error(cloud: Cloud) -> None:
    api = cloud.api()
    inst = api.create_instance(InstanceCreate(image="busybox", command=["no-such-command"]))
    with pytest.raises(AtollError) as err:
        api.start_instance(inst.id)
    assert "no-such-command" in err.value.message
    assert api.inspect_instance(inst.id).status != "running"


def test_bad_input_names_the_field(cloud: Cloud) -> None:
    api = cloud.api()
    with pytest.raises(AtollError) as err:
        api.create_instance(InstanceCreate(image="no-such-image:1.0", command=["true"]))
    assert err.value.status == 404 and "no-such-image" in err.value.message
    with pytest.raises(AtollError) as err:
        api.create_instance(InstanceCreate(image="busybox", command=["true"], working_dir="relative/dir"))
    assert err.value.status == 400 and "working_dir" in err.value.message


def test_projects_do_not_see_each_other(cloud: Cloud) -> None:
    api = cloud.api()
    mine = run(api, "sleep", "60", name="private-one")
    api.create_project("other-team")
    other = cloud.api("other-team")
    assert [i.id for i in other.instances(all=True)] == []
    for ref in (mine, "private-one"):
        with pytest.raises(AtollError) as err:
            other.inspect_instance(ref)
        assert err.value.status == 404
    with pytest.raises(AtollError):
        other.remove_instance(mine, force=True)
    # The public starter image is visible to every project; instances there are their own.
    theirs = run(other, "true", name="private-one")
    assert other.wait_instance(theirs).exit_code == 0
    assert api.inspect_instance("private-one").id == mine
    other.remove_instance(theirs)
    api.remove_instance(mine, force=True)
