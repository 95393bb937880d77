"""The image config merged with the request, and the security profile, as seen from inside."""

from __future__ import annotations

import os
from typing import Any

from atoll.client import AtollAPI
from atoll.schemas import InstanceCreate
from tests.e2e.cloud import Cloud
from tests.e2e.helpers import output, run


def stdout_of(api: AtollAPI, *command: str, **fields: Any) -> str:
    ref = run(api, *command, **fields)
    result = api.wait_instance(ref)
    out = output(api, ref)
    assert result.exit_code == 0, out
    return out[1].decode()


def test_env_workdir_hostname_and_labels(cloud: Cloud) -> None:
    api = cloud.api()
    text = stdout_of(
        api,
        "sh",
        "-c",
        "echo $FOO; echo $PATH; pwd; hostname; cat /etc/hostname",
        env=["FOO=bar"],
        working_dir="/tmp",
        hostname="box1",
        labels={"team": "core"},
    )
    foo, path, cwd, hostname, etc_hostname = text.split()
    assert (foo, cwd, hostname, etc_hostname) == ("bar", "/tmp", "box1", "box1")
    assert "/bin" in path
    assert any(i.labels.get("team") == "core" for i in api.instances(all=True))


def test_user_by_name_and_by_uid(cloud: Cloud) -> None:
    api = cloud.api()
    assert stdout_of(api, "id", user="nobody").startswith("uid=65534(nobody)")
    assert stdout_of(api, "id", "-u", user="1234:5678").strip() == "1234"
    assert stdout_of(api, "id", "-g", user="1234:5678").strip() == "5678"
    inst = api.create_instance(InstanceCreate(image="busybox", command=["id"], user="no-such-user"))
    try:
        api.start_instance(inst.id)
        raise AssertionError("an unknown user must be refused")
    except Exception as exc:
        assert "no-such-user" in str(exc)


def test_entrypoint_and_cmd_merge_with_the_image(cloud: Cloud) -> None:
    api = cloud.api()
    ref = api.create_instance(InstanceCreate(image="busybox", entrypoint=["echo", "from-entrypoint"])).id
    api.start_instance(ref)
    api.wait_instance(ref)
    assert output(api, ref)[1] == b"from-entrypoint\n"  # the image's Cmd ("sh") is dropped
    assert api.inspect_instance(ref).process.args == ["echo", "from-entrypoint"]


def test_read_only_rootfs(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "sh", "-c", "touch /x 2>/dev/null && echo wrote || echo refused", readonly_rootfs=True)
    api.wait_instance(ref)
    assert output(api, ref)[1] == b"refused\n"


def test_security_profile(cloud: Cloud) -> None:
    api = cloud.api()
    status = stdout_of(api, "cat", "/proc/self/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["NoNewPrivs"].strip() == "1"
    docker_default = 0x00000000A80425FB  # Docker's default capability set
    assert int(fields["CapEff"], 16) & ~docker_default == 0
    assert int(fields["CapBnd"], 16) & ~docker_default == 0
    assert fields["Seccomp"].strip() == "2"
    masked = stdout_of(
        api, "sh", "-c", "wc -c < /proc/timer_list; echo 1 > /proc/sys/kernel/domainname || echo ro"
    )
    assert masked.split() == ["0", "ro"]


def test_own_namespaces_with_loopback(cloud: Cloud) -> None:
    api = cloud.api()
    text = stdout_of(
        api,
        "sh",
        "-c",
        "for n in pid mnt ipc uts net; do readlink /proc/self/ns/$n; done; ip -o link; "
        "cat /proc/1/cmdline | tr '\\0' ' '",
    )
    lines = text.splitlines()
    for ns, line in zip(["pid", "mnt", "ipc", "uts", "net"], lines[:5], strict=True):
        assert line != os.readlink(f"/proc/self/ns/{ns}"), f"{ns} namespace is shared with the host"
    links = [line for line in lines[5:] if ": " in line and "link/" in line]
    assert len(links) == 1 and "lo:" in links[0] and "UP" in links[0]
    assert "atoll-init" in lines[-1]
