from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atoll.model.errors import InvalidInput
from atoll.model.image import ImageConfig
from atoll.model.instance import InstanceSpec, Resources, RestartPolicy
from atoll.schemas import InstanceCreate
from atoll.services.config_merge import (
    DEFAULT_PATH,
    NO_COMMAND,
    merge_config,
    merge_env,
    restart_policy,
)

ID = "ab" * 32


def merge(image: ImageConfig | None = None, **request: Any) -> InstanceSpec:
    req = InstanceCreate.model_validate({"image": "x", **request})
    return merge_config(
        image or ImageConfig(cmd=["sh"]),
        req,
        instance_id=ID,
        name="n",
        project="p",
        image_id="sha256:" + "0" * 64,
        layers=["l1"],
    )


def env_dict(env: list[str]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in env)


@pytest.mark.parametrize(
    ("image", "request_", "args"),
    [
        (ImageConfig(entrypoint=["/ep"], cmd=["a"]), {}, ["/ep", "a"]),
        (ImageConfig(entrypoint=["/ep"], cmd=["a"]), {"command": ["b", "c"]}, ["/ep", "b", "c"]),
        (ImageConfig(entrypoint=["/ep"], cmd=["a"]), {"entrypoint": ["/new"]}, ["/new"]),
        (
            ImageConfig(entrypoint=["/ep"], cmd=["a"]),
            {"entrypoint": ["/new"], "command": ["x"]},
            ["/new", "x"],
        ),
        (ImageConfig(cmd=["sh", "-c", "true"]), {}, ["sh", "-c", "true"]),
        (ImageConfig(cmd=["sh"]), {"command": ["ls"]}, ["ls"]),
        (ImageConfig(entrypoint=["/ep"], cmd=["a"]), {"entrypoint": [""], "command": ["ls"]}, ["ls"]),
    ],
)
def test_args(image: ImageConfig, request_: dict[str, Any], args: list[str]) -> None:
    assert merge(image, **request_).process.args == args


@pytest.mark.parametrize(
    ("image", "request_"),
    [
        (ImageConfig(), {}),
        (ImageConfig(cmd=[]), {"command": []}),
        (ImageConfig(entrypoint=["/ep"], cmd=["a"]), {"entrypoint": []}),
    ],
)
def test_no_command(image: ImageConfig, request_: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match="no command"):
        merge(image, **request_)
    assert NO_COMMAND == "no command: the image has no Entrypoint or Cmd and none was given"


def test_env_merge_request_wins_and_order_is_stable() -> None:
    image = ImageConfig(cmd=["sh"], env=["PATH=/img", "A=1", "B=2"])
    spec = merge(image, env=["B=20", "C=3", "A=10"])
    assert spec.process.env == ["PATH=/img", f"HOSTNAME={ID[:12]}", "A=10", "B=20", "C=3"]


def test_default_path_and_removal() -> None:
    spec = merge(ImageConfig(cmd=["sh"], env=["A=1"]), env=["A"], tty=True)
    assert env_dict(spec.process.env) == {"PATH": DEFAULT_PATH, "HOSTNAME": ID[:12], "TERM": "xterm"}


def test_env_entry_needs_a_key() -> None:
    with pytest.raises(InvalidInput, match=r"env\[1\]"):
        merge(env=["A=1", "=x"])


def test_working_dir_user_labels_hostname() -> None:
    image = ImageConfig(cmd=["sh"], working_dir="/srv", user="app", labels={"a": "1", "b": "2"})
    spec = merge(image)
    assert (spec.process.cwd, spec.process.user, spec.hostname) == ("/srv", "app", ID[:12])
    spec = merge(image, working_dir="/tmp/", user="0:0", labels={"b": "3", "c": "4"}, hostname="box")
    assert (spec.process.cwd, spec.process.user, spec.hostname) == ("/tmp", "0:0", "box")
    assert spec.labels == {"a": "1", "b": "3", "c": "4"}
    assert merge(ImageConfig(cmd=["sh"])).process.cwd == "/"


def test_relative_working_dir() -> None:
    with pytest.raises(InvalidInput, match="working_dir"):
        merge(working_dir="tmp")


@pytest.mark.parametrize(
    ("image_signal", "requested", "expected"),
    [("", None, "SIGTERM"), ("SIGQUIT", None, "SIGQUIT"), ("SIGQUIT", "int", "SIGINT"), ("", "9", "SIGKILL")],
)
def test_stop_signal(image_signal: str, requested: str | None, expected: str) -> None:
    spec = merge(ImageConfig(cmd=["sh"], stop_signal=image_signal), stop_signal=requested)
    assert spec.stop_signal == expected


def test_bad_stop_signal() -> None:
    with pytest.raises(InvalidInput, match="stop_signal"):
        merge(stop_signal="SIGNOPE")


def test_resources() -> None:
    spec = merge(resources={"cpus": 1.5, "memory": 64 << 20, "memory_swap": -1, "pids_limit": 10})
    assert spec.resources == Resources(
        memory_bytes=64 << 20,
        memory_swap_bytes=-1,
        cpu_quota_us=150_000,
        cpu_period_us=100_000,
        pids_limit=10,
    )
    spec = merge(resources={"cpu_quota": 50_000, "cpu_period": 100_000, "cpu_shares": 512})
    assert (spec.resources.cpu_quota_us, spec.resources.cpu_period_us, spec.resources.cpu_shares) == (
        50_000,
        100_000,
        512,
    )


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"cpus": 1, "cpu_quota": 50_000}, "resources.cpus"),
        ({"cpus": 0.001}, "resources.cpus"),
        ({"memory_swap": 100 << 20}, "resources.memory_swap"),
        ({"memory": 64 << 20, "memory_swap": 32 << 20}, "resources.memory_swap"),
    ],
)
def test_resource_errors(resources: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput, match=field.replace(".", r"\.")):
        merge(resources=resources)


def test_restart_policy_rules() -> None:
    ok = InstanceCreate.model_validate(
        {"image": "x", "restart_policy": {"name": "on-failure", "max_retries": 3}}
    )
    assert restart_policy(ok) == RestartPolicy("on-failure", 3)
    bad = InstanceCreate.model_validate(
        {"image": "x", "restart_policy": {"name": "always", "max_retries": 3}}
    )
    with pytest.raises(InvalidInput, match="max_retries"):
        restart_policy(bad)
    rm = InstanceCreate.model_validate(
        {"image": "x", "auto_remove": True, "restart_policy": {"name": "always"}}
    )
    with pytest.raises(InvalidInput, match="auto_remove"):
        restart_policy(rm)
    assert restart_policy(InstanceCreate.model_validate({"image": "x", "auto_remove": True})).name == "no"


def test_spec_carries_identity_and_defaults() -> None:
    spec = merge(readonly_rootfs=True, stop_timeout=3)
    assert (spec.id, spec.name, spec.project, spec.layers) == (ID, "n", "p", ["l1"])
    assert spec.readonly_rootfs and spec.stop_timeout == 3
    assert merge().stop_timeout == 10.0


keys = st.sampled_from(["A", "B", "C", "PATH", "HOME", "X_1"])
values = st.text(alphabet="abc=:/ ", max_size=5)
entries = st.builds(lambda k, v: f"{k}={v}", keys, values)


@given(base=st.lists(entries, max_size=8), overrides=st.lists(entries, max_size=8))
def test_env_merge_properties(base: list[str], overrides: list[str]) -> None:
    merged = merge_env(base, overrides)
    names = [e.split("=", 1)[0] for e in merged]
    assert len(names) == len(set(names))
    expected = {**env_dict(base), **env_dict(overrides)}
    assert env_dict(merged) == expected
    first_seen = list(dict.fromkeys(e.split("=", 1)[0] for e in base + overrides))
    assert names == first_seen


@given(
    image_env=st.lists(entries, max_size=6),
    request_env=st.lists(entries, max_size=6),
    ep=st.none() | st.lists(st.text(alphabet="abc/", min_size=1, max_size=4), max_size=3),
    cmd=st.none() | st.lists(st.text(alphabet="abc/", min_size=1, max_size=4), max_size=3),
    image_ep=st.none() | st.lists(st.just("/ep"), min_size=1, max_size=1),
    image_cmd=st.none() | st.lists(st.just("x"), max_size=2),
)
def test_merge_properties(
    image_env: list[str],
    request_env: list[str],
    ep: list[str] | None,
    cmd: list[str] | None,
    image_ep: list[str] | None,
    image_cmd: list[str] | None,
) -> None:
    image = ImageConfig(entrypoint=image_ep, cmd=image_cmd, env=image_env)
    if ep is not None:
        expected = ep + (cmd or [])
    else:
        expected = (image_ep or []) + (cmd if cmd is not None else image_cmd or [])
    try:
        spec = merge(image, entrypoint=ep, command=cmd, env=request_env)
    except InvalidInput as e:
        assert not expected and "no command" in str(e)
        return
    assert spec.process.args == expected
    env = env_dict(spec.process.env)
    for key, value in env_dict(request_env).items():
        assert env[key] == value
    assert "PATH" in env
    if not any(e.startswith("PATH=") for e in image_env + request_env):
        assert env["PATH"] == DEFAULT_PATH
