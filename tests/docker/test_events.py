"""`docker events`: the lifecycle of a container and of an image tag, live and replayed with filters."""

from __future__ import annotations

import json
import subprocess
import time

import docker

from tests.docker.conftest import DOCKER, DockerCLI


def test_live_events_follow_a_container_and_an_image(cli: DockerCLI) -> None:
    watcher = subprocess.Popen(
        [DOCKER, "events", "--format", "{{json .}}"],
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)  # the CLI has connected
        assert (
            cli.run(
                "run", "--rm", "--name", "evented", "--label", "k=v", "busybox", "sh", "-c", "exit 2"
            ).returncode
            == 2
        )
        cli.ok("tag", "busybox", "evtag:1")
        cli.ok("rmi", "evtag:1")
        time.sleep(1)
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    events = [json.loads(line) for line in out.splitlines()]
    mine = [e["Action"] for e in events if e["Actor"]["Attributes"].get("name") == "evented"]
    assert mine == ["create", "attach", "start", "die", "destroy"]
    die = next(e for e in events if e["Action"] == "die")
    assert die["Actor"]["Attributes"]["exitCode"] == "2" and die["Actor"]["Attributes"]["k"] == "v"
    assert die["Type"] == "container" and die["timeNano"] > 0
    image_actions = [e["Action"] for e in events if e["Type"] == "image"]
    assert image_actions == ["tag", "untag"]


def test_replay_with_since_until_and_filters(cli: DockerCLI, dockerpy: docker.DockerClient) -> None:
    start = time.time()
    cli.ok("run", "-d", "--name", "replayed", "busybox", "sleep", "30")
    cli.ok("stop", "-t", "0", "replayed")
    cli.ok("rm", "replayed")
    end = time.time() + 0.5
    lines = cli.ok(
        "events", "--since", f"{start:.3f}", "--until", f"{end:.3f}",
        "--filter", "container=replayed", "--filter", "event=stop", "--filter", "event=destroy",
        "--format", "{{.Action}}",
    )  # fmt: skip
    assert lines.split() == ["stop", "destroy"]
    seen = list(dockerpy.events(since=start, until=end, decode=True, filters={"type": "container"}))
    actions = [e["Action"] for e in seen if e["Actor"]["Attributes"].get("name") == "replayed"]
    assert actions[:2] == ["create", "start"] and actions[-1] == "destroy"
    bad = cli.run("events", "--since", "0", "--until", "1", "--filter", "bogus=1")
    assert bad.returncode != 0 and "invalid filter" in bad.stderr


def test_network_and_volume_events_have_dockerds_shape(cli: DockerCLI) -> None:
    start = time.time()
    net_id = cli.ok("network", "create", "evnet").strip()
    cli.ok("create", "--name", "evnetbox", "busybox", "true")
    cli.ok("network", "connect", "evnet", "evnetbox")
    cli.ok("network", "disconnect", "evnet", "evnetbox")
    box_id = cli.ok("inspect", "--format", "{{.Id}}", "evnetbox").strip()
    cli.ok("rm", "evnetbox")
    cli.ok("network", "rm", "evnet")
    cli.ok("volume", "create", "evvol")
    cli.ok("volume", "rm", "evvol")
    end = time.time() + 0.5
    window = ["--since", f"{start:.3f}", "--until", f"{end:.3f}"]
    text = cli.ok("events", *window, "--filter", "type=network", "--filter", "network=evnet")
    lines = [line.split(" ", 1)[1] for line in text.splitlines()]  # without the time
    assert lines == [
        f"network create {net_id} (name=evnet, type=bridge)",
        f"network connect {net_id} (container={box_id}, name=evnet, type=bridge)",
        f"network disconnect {net_id} (container={box_id}, name=evnet, type=bridge)",
        f"network destroy {net_id} (name=evnet, type=bridge)",
    ]
    seen = cli.ok("events", *window, "--filter", "type=volume", "--format", "{{json .}}")
    volume_events = [json.loads(line) for line in seen.splitlines()]
    assert [(e["Type"], e["Action"], e["Actor"]) for e in volume_events] == [
        ("volume", "create", {"ID": "evvol", "Attributes": {"driver": "local"}}),
        ("volume", "destroy", {"ID": "evvol", "Attributes": {"driver": "local"}}),
    ]
    assert all(e["scope"] == "local" and e["timeNano"] > 0 for e in volume_events)
    only = cli.ok(
        "events", *window, "--filter", "volume=evvol", "--filter", "event=destroy", "--format", "{{.Action}}"
    )
    assert only.split() == ["destroy"]
