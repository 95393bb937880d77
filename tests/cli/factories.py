"""Wire models with plausible defaults, for the SDK and CLI tests."""

from __future__ import annotations

from typing import Any

from atoll.schemas import Image, ImageConfigWire, Instance, ProcessWire, ResourcesWire, RestartPolicyWire

INSTANCE_ID = "0123456789abcdef" * 4
IMAGE_ID = "sha256:" + "fedcba9876543210" * 4


def make_instance(**overrides: Any) -> Instance:
    fields: dict[str, Any] = {
        "id": INSTANCE_ID,
        "name": "web",
        "project": "default",
        "kind": "container",
        "image": "alpine:latest",
        "image_id": IMAGE_ID,
        "host": "host-1",
        "status": "created",
        "desired_state": "stopped",
        "created_at": "2024-01-01T00:00:00.123456789Z",
        "started_at": "",
        "finished_at": "",
        "exit_code": None,
        "oom_killed": False,
        "error": "",
        "restart_count": 0,
        "pid": 0,
        "process": ProcessWire(args=["sh", "-c", "echo hello"], env=[], cwd="/", user="", tty=False),
        "hostname": "0123456789ab",
        "labels": {},
        "readonly_rootfs": False,
        "resources": ResourcesWire(),
        "restart_policy": RestartPolicyWire(),
        "stop_signal": "SIGTERM",
        "stop_timeout": 10.0,
        "auto_remove": False,
    }
    fields.update(overrides)
    return Instance(**fields)


def make_image(**overrides: Any) -> Image:
    fields: dict[str, Any] = {
        "id": IMAGE_ID,
        "repo_tags": ["alpine:latest"],
        "size": 7_800_000,
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "layers": ["sha256:" + "ab" * 32],
        "config": ImageConfigWire(cmd=["/bin/sh"]),
    }
    fields.update(overrides)
    return Image(**fields)
