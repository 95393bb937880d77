"""`docker events` of what a run attaches: network connect/disconnect, volume mount/unmount.

dockerd logs them for every run, around ``start`` and ``die``; the last test compares the whole event
sequence of one `docker run --rm -v VOL:/data --network NET busybox true` with a stock dockerd's.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import docker

from tests.docker.conftest import DockerCLI
from tests.prefix import NET_PREFIX


def replay(cli: DockerCLI, start: float, *filters: str) -> list[dict[str, Any]]:
    end = time.time() + 0.5
    window = ["--since", f"{start:.3f}", "--until", f"{end:.3f}"]
    text = cli.ok("events", *window, *filters, "--format", "{{json .}}")
    return [json.loads(line) for line in text.splitlines()]


def of_container(events: list[dict[str, Any]], container_id: str) -> list[tuple[str, str]]:
    """(Type, Action) of the events about one container: its own and those naming it as attribute."""
    return [
        (e["Type"], e["Action"])
        for e in events
        if e["Actor"]["ID"] == container_id or e["Actor"]["Attributes"].get("container") == container_id
    ]


def test_run_rm_logs_connect_mount_and_their_ends(cli: DockerCLI, tmp_path: Any) -> None:
    net_id = cli.ok("network", "create", "--subnet", "10.214.21.0/24", "ae-net").strip()
    cli.ok("volume", "create", "ae-vol")
    try:
        start = time.time()
        box = f"ae-{uuid.uuid4().hex[:6]}"
        cli.ok(
            "run", "--rm", "--name", box, "-v", "ae-vol:/data", "-v", f"{tmp_path}:/bound:ro",
            "--network", "ae-net", "busybox", "true",
        )  # fmt: skip
        every = replay(cli, start)
        box_id = next(e["Actor"]["ID"] for e in every if e["Actor"]["Attributes"].get("name") == box)
        # The bind mount is no volume: nothing is logged for it, as in dockerd.
        assert of_container(every, box_id) == [
            ("container", "create"),
            ("container", "attach"),
            ("network", "connect"),
            ("volume", "mount"),
            ("container", "start"),
            ("container", "die"),
            ("network", "disconnect"),
            ("volume", "unmount"),
            ("container", "destroy"),
        ]
        lines = [
            line.split(" ", 1)[1]
            for line in cli.ok(
                "events", "--since", f"{start:.3f}", "--until", f"{time.time() + 0.5:.3f}",
                "--filter", "type=network", "--filter", "network=ae-net",
            ).splitlines()
        ]  # fmt: skip
        assert lines == [
            f"network connect {net_id} (container={box_id}, name=ae-net, type=bridge)",
            f"network disconnect {net_id} (container={box_id}, name=ae-net, type=bridge)",
        ]
        volume = replay(
            cli, start, "--filter", "volume=ae-vol", "--filter", "event=mount", "--filter", "event=unmount"
        )
        assert [(e["Action"], e["Actor"]) for e in volume] == [
            (
                "mount",
                {
                    "ID": "ae-vol",
                    "Attributes": {
                        "container": box_id,
                        "destination": "/data",
                        "driver": "local",
                        "propagation": "",
                        "read/write": "true",
                    },
                },
            ),
            ("unmount", {"ID": "ae-vol", "Attributes": {"container": box_id, "driver": "local"}}),
        ]
    finally:
        cli.run("network", "rm", "ae-net")
        cli.run("volume", "rm", "ae-vol")


def test_default_network_and_stop_through_docker_py(cli: DockerCLI, dockerpy: docker.DockerClient) -> None:
    start = time.time()
    box = dockerpy.containers.run(
        "busybox", ["sleep", "30"], detach=True, volumes={"ae-ro": {"bind": "/ro", "mode": "ro"}}
    )
    try:
        box.stop(timeout=0)
        end = time.time() + 0.5
        seen = list(dockerpy.events(since=start, until=end, decode=True))
        ours = [e for e in seen if e["Actor"]["Attributes"].get("container") == box.id]
        assert [(e["Type"], e["Action"]) for e in ours] == [
            ("network", "connect"),
            ("volume", "mount"),
            ("network", "disconnect"),
            ("volume", "unmount"),
        ]
        bridge = dockerpy.networks.get("bridge")
        connect = ours[0]
        assert connect["Actor"] == {
            "ID": bridge.id,
            "Attributes": {"container": box.id, "name": "bridge", "type": "bridge"},
        }
        assert ours[1]["Actor"]["ID"] == "ae-ro" and ours[1]["Actor"]["Attributes"]["read/write"] == "false"
        actions = [(e["Type"], e["Action"]) for e in seen if e["Actor"]["ID"] == box.id or e in ours]
        assert actions.index(("volume", "mount")) < actions.index(("container", "start"))
        assert actions.index(("container", "die")) < actions.index(("network", "disconnect"))
        only = list(
            dockerpy.events(
                since=start,
                until=end,
                decode=True,
                filters={"type": "network", "event": "disconnect", "network": "bridge"},
            )
        )
        assert [
            e["Actor"]["Attributes"]["container"]
            for e in only
            if e["Actor"]["Attributes"]["container"] == box.id
        ] == [box.id]
    finally:
        box.remove(force=True)
        cli.run("volume", "rm", "ae-ro")


def test_every_restart_by_policy_logs_them_again(cli: DockerCLI) -> None:
    """As dockerd (checked against 20.10): each run of a restarting container connects and mounts
    before its ``start`` and disconnects and unmounts after its ``die``."""
    start = time.time()
    box = cli.ok("run", "-d", "--restart", "on-failure:2", "-v", "ae-rvol:/d", "busybox", "false").strip()
    try:
        deadline = time.monotonic() + 30
        while cli.ok("inspect", "--format", "{{.State.Status}} {{.RestartCount}}", box).split() != [
            "exited",
            "2",
        ]:
            assert time.monotonic() < deadline, "the container did not end its two restarts"
            time.sleep(0.2)
        one_run = [
            ("network", "connect"),
            ("volume", "mount"),
            ("container", "start"),
            ("container", "die"),
            ("network", "disconnect"),
            ("volume", "unmount"),
        ]
        assert of_container(replay(cli, start), box)[1:] == one_run * 3
    finally:
        cli.run("rm", "-f", box)
        cli.run("volume", "rm", "ae-rvol")


def normalized(events: list[dict[str, Any]], box_id: str, net_id: str) -> list[tuple[str, str, str, str]]:
    """The events about one container with its ids and generated names replaced by placeholders."""
    out = []
    for e in events:
        attrs = e["Actor"]["Attributes"]
        if e["Actor"]["ID"] != box_id and attrs.get("container") != box_id:
            continue
        actor = {box_id: "<container>", net_id: "<network>"}.get(e["Actor"]["ID"], e["Actor"]["ID"])
        shown = {
            k: {box_id: "<container>"}.get(v, v)
            for k, v in attrs.items()
            if k != "name" or e["Type"] != "container"
        }
        out.append((e["Type"], e["Action"], actor, json.dumps(shown, sort_keys=True)))
    return out


def run_and_replay(cli: DockerCLI, net_args: list[str], suffix: str) -> list[tuple[str, str, str, str]]:
    net_id = cli.ok("network", "create", *net_args, f"ae-diff-{suffix}").strip()
    cli.ok("volume", "create", f"ae-dvol-{suffix}")
    try:
        start = time.time()
        name = f"ae-d-{suffix}"
        cli.run(
            "run",
            "--rm",
            "--name",
            name,
            "-v",
            f"ae-dvol-{suffix}:/data",
            "--network",
            f"ae-diff-{suffix}",
            "busybox",
            "true",
        )
        every = replay(cli, start)
        box_id = next(e["Actor"]["ID"] for e in every if e["Actor"]["Attributes"].get("name") == name)
        return normalized(every, box_id, net_id)
    finally:
        cli.run("network", "rm", f"ae-diff-{suffix}")
        cli.run("volume", "rm", f"ae-dvol-{suffix}")


def test_event_sequence_matches_dockerd(cli: DockerCLI, stock: DockerCLI) -> None:
    suffix = uuid.uuid4().hex[:6]
    # dockerd's bridge carries the run's link prefix (the leak guard sees it if it stays) and a subnet
    # no Atoll test uses; dockerd runs without iptables, so nothing else on the host changes.
    bridge = ["-o", f"com.docker.network.bridge.name={NET_PREFIX}-dk", "--subnet", "10.219.7.0/24"]
    theirs = run_and_replay(stock, bridge, suffix)
    ours = run_and_replay(cli, ["--subnet", "10.214.22.0/24"], suffix)
    assert ours == theirs
