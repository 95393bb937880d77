"""Pure parts of the Docker layer: the create translation, routing and version ranges, status text."""

from __future__ import annotations

from typing import Any

import pytest

from atoll.api.docker.create import instance_create
from atoll.api.docker.detach import DetachScanner, parse_keys
from atoll.api.docker.http import DockerError, Json, Request
from atoll.api.docker.router import Route, Router, split_version
from atoll.model.clock import human_duration

CLI_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": True,
    "AttachStderr": True, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": [], "Cmd": ["true"],
    "Image": "busybox", "Volumes": {}, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": {},
    "HostConfig": {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
        "NetworkMode": "default",
        "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
        "ConsoleSize": [40, 120], "CapAdd": None, "Dns": [], "Privileged": False, "ReadonlyRootfs": False,
        "ShmSize": 0, "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "MemorySwappiness": -1, "PidsLimit": 0,
        "Devices": [], "Ulimits": [], "MaskedPaths": None,
    },
    "NetworkingConfig": {
        "EndpointsConfig": {"default": {"IPAMConfig": None, "Aliases": None, "MacAddress": ""}},
    },
}  # fmt: skip


def body(**changes: Any) -> dict[str, Any]:
    out = {**CLI_DEFAULTS, "HostConfig": dict(CLI_DEFAULTS["HostConfig"])}
    for key, value in changes.items():
        if key.startswith("HostConfig_"):
            out["HostConfig"][key.removeprefix("HostConfig_")] = value
        else:
            out[key] = value
    return out


def test_the_clis_defaults_translate_to_a_plain_request() -> None:
    req = instance_create(body(), "/web")
    assert req.name == "web" and req.image == "busybox" and req.command == ["true"]
    assert req.resources.memory is None and req.restart_policy.name == "no"
    assert not req.tty and not req.stdin


def test_limits_and_policies_translate() -> None:
    req = instance_create(
        body(
            HostConfig_Memory=64 << 20,
            HostConfig_MemorySwap=-1,
            HostConfig_NanoCpus=500_000_000,
            HostConfig_PidsLimit=-1,
            HostConfig_RestartPolicy={"Name": "on-failure", "MaximumRetryCount": 3},
            HostConfig_Init=True,
            OpenStdin=True,
            Tty=True,
            StopSignal="SIGINT",
        ),
        "",
    )
    r = req.resources
    assert (r.memory, r.memory_swap, r.cpus, r.pids_limit) == (64 << 20, -1, 0.5, None)
    assert (req.restart_policy.name, req.restart_policy.max_retries) == ("on-failure", 3)
    assert req.stdin and req.tty and req.stop_signal == "SIGINT" and req.name is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"HostConfig_Privileged": True}, "HostConfig.Privileged"),
        ({"HostConfig_Binds": ["/a:/b:Z"]}, "HostConfig.Binds[0]"),
        ({"HostConfig_ShmSize": 1 << 20}, "HostConfig.ShmSize"),
        ({"HostConfig_NetworkMode": "host"}, "HostConfig.NetworkMode"),
        ({"HostConfig_MemorySwappiness": 10}, "HostConfig.MemorySwappiness"),
        ({"HostConfig_Memory": 1 << 20}, "HostConfig.Memory"),
        ({"HostConfig_CpuQuota": 50000, "HostConfig_NanoCpus": 1}, "HostConfig.NanoCpus"),
        ({"HostConfig_RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}, "MaximumRetryCount"),
        ({"HostConfig_RestartPolicy": {"Name": "sometimes"}}, "HostConfig.RestartPolicy.Name"),
        ({"HostConfig_Mounts": [{"Type": "npipe", "Target": "/x"}]}, "HostConfig.Mounts[0].Type"),
        ({"Healthcheck": {"Test": ["CMD", "true"]}}, "Healthcheck"),
        ({"ExposedPorts": {"80/sctp": {}}, "HostConfig_PublishAllPorts": True}, "ExposedPorts"),
        ({"Image": ""}, "Image"),
        ({"Cmd": [1, 2]}, "Cmd"),
        ({"Hostname": "bad host"}, "Hostname"),
        (
            {"NetworkingConfig": {"EndpointsConfig": {"mynet": {"Links": ["a"]}}}},
            "EndpointsConfig.mynet.Links",
        ),
    ],
)
def test_what_atoll_cannot_honour_is_a_400_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(DockerError) as e:
        instance_create(body(**change), "")
    assert e.value.status == 400 and field in e.value.message


def test_a_bad_name_is_refused_by_name() -> None:
    with pytest.raises(DockerError) as e:
        instance_create(body(), "/bad name")
    assert "name" in e.value.message


def test_version_range() -> None:
    assert split_version("/v1.24/containers/json") == ("/containers/json", "1.24")
    assert split_version("/v1.50/_ping") == ("/_ping", "1.50")
    assert split_version("/info")[0] == "/info"
    for bad, word in (("/v1.23/info", "too old"), ("/v1.51/info", "too new"), ("/v2.0/info", "too new")):
        with pytest.raises(DockerError) as e:
            split_version(bad)
        assert e.value.status == 400 and word in e.value.message


async def _ok(_: Request) -> Json:
    return Json({})


def test_router_patterns_and_statuses() -> None:
    router = Router([Route("GET", "/images/{name*}/json", _ok), Route("DELETE", "/images/{name*}", _ok)])
    assert router.match("GET", "/images/reg:5000/team/app:1/json")[1] == {"name": "reg:5000/team/app:1"}
    assert router.match("HEAD", "/images/a/json")[1] == {"name": "a"}
    with pytest.raises(DockerError) as e:
        router.match("POST", "/images/a/json")
    assert e.value.status == 405
    with pytest.raises(DockerError) as e:
        router.match("GET", "/nothing")
    assert e.value.status == 404


def test_human_duration_matches_docker() -> None:
    assert [human_duration(s) for s in (0.2, 1, 42, 61, 600, 3700, 7200, 86400 * 3)] == [
        "Less than a second", "1 second", "42 seconds", "About a minute", "10 minutes", "About an hour",
        "2 hours", "3 days",
    ]  # fmt: skip


def test_detach_keys() -> None:
    assert parse_keys("") == b"\x10\x11"
    assert parse_keys("ctrl-a,x,ctrl-@") == b"\x01x\x00"
    with pytest.raises(DockerError):
        parse_keys("ctrl-1")
    scanner = DetachScanner(b"\x10\x11")
    assert scanner.feed(b"ab\x10") == (b"ab", False)  # a possible start is held back
    assert scanner.feed(b"c") == (b"\x10c", False)  # ...and released when the sequence breaks
    assert scanner.feed(b"\x10\x10") == (b"\x10", False)
    assert scanner.feed(b"\x11rest") == (b"", True)
