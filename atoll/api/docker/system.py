"""System endpoints: ``/_ping``, ``/version``, ``/info``. Clients read these first to negotiate."""

from __future__ import annotations

import os
import platform
import time
from datetime import UTC, datetime

from atoll import __version__
from atoll.api.docker.http import Empty, Json, Request
from atoll.api.docker.router import API_VERSION, MIN_API_VERSION, Route
from atoll.services import hosts, images, instances
from atoll.services.context import Controller

PROJECT = "default"
"""The Docker listener acts in this project (until tokens name a tenant)."""

PING_HEADERS = [
    ("Builder-Version", "1"),  # no BuildKit: the CLI must not try a BuildKit session
    ("Cache-Control", "no-cache, no-store, must-revalidate"),
    ("Pragma", "no-cache"),
]


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


class System:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.started = time.time()

    async def ping(self, request: Request) -> Empty:
        return Empty(
            status=200, headers=[*PING_HEADERS, ("Content-Type", "text/plain; charset=utf-8")], text=b"OK"
        )

    async def version(self, request: Request) -> Json:
        details = {
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "Os": "linux",
            "Arch": _arch(),
            "KernelVersion": os.uname().release,
        }
        return Json(
            {
                "Platform": {"Name": "Atoll"},
                "Components": [
                    {
                        "Name": "Engine",
                        "Version": __version__,
                        "Details": {**details, "Experimental": "false"},
                    }
                ],
                "Version": __version__,
                "GitCommit": "",
                "GoVersion": "",
                "BuildTime": "",
                **details,
            }
        )

    async def info(self, request: Request) -> Json:
        listed = instances.list_instances(self.ctl, project=PROJECT, all=True)
        running = sum(1 for i in listed if i.status in ("running", "restarting"))
        host_list = hosts.list_hosts(self.ctl)
        runtime = host_list[0].runtime if host_list else "runc"
        cgroup = host_list[0].cgroup_version if host_list else 2
        return Json(
            {
                "ID": host_list[0].id if host_list else "",
                "Containers": len(listed),
                "ContainersRunning": running,
                "ContainersPaused": 0,
                "ContainersStopped": len(listed) - running,
                "Images": len(images.list_images(self.ctl, project=PROJECT)),
                "Driver": "overlay2",
                "DriverStatus": [["Backing Filesystem", "extfs"]],
                "Plugins": {
                    "Volume": [],
                    "Network": ["bridge", "null"],
                    "Authorization": None,
                    "Log": ["json-file"],
                },
                "MemoryLimit": True,
                "SwapLimit": True,
                "CpuCfsPeriod": True,
                "CpuCfsQuota": True,
                "CPUShares": True,
                "CPUSet": False,
                "PidsLimit": True,
                "OomKillDisable": False,
                "IPv4Forwarding": True,
                "Debug": False,
                "NFd": 0,
                "NGoroutines": 0,
                "SystemTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "LoggingDriver": "json-file",
                "CgroupDriver": "cgroupfs",
                "CgroupVersion": str(cgroup),
                "NEventsListener": 0,
                "KernelVersion": os.uname().release,
                "OperatingSystem": "Atoll",
                "OSVersion": __version__,
                "OSType": "linux",
                "Architecture": platform.machine(),
                "IndexServerAddress": "https://index.docker.io/v1/",
                "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
                "NCPU": os.cpu_count() or 1,
                "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                "DockerRootDir": "",
                "HttpProxy": "",
                "HttpsProxy": "",
                "NoProxy": "",
                "Name": platform.node(),
                "Labels": [],
                "ExperimentalBuild": False,
                "ServerVersion": __version__,
                "Runtimes": {runtime: {"path": runtime}},
                "DefaultRuntime": runtime,
                "Swarm": {
                    "LocalNodeState": "inactive",
                    "ControlAvailable": False,
                    "NodeID": "",
                    "NodeAddr": "",
                },
                "LiveRestoreEnabled": True,
                "Isolation": "",
                "InitBinary": "atoll-init",
                "ContainerdCommit": {"ID": ""},
                "RuncCommit": {"ID": ""},
                "InitCommit": {"ID": ""},
                "SecurityOptions": ["name=seccomp,profile=builtin", "name=no-new-privileges"],
                "Warnings": [],
            }
        )

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/_ping", self.ping),
            Route("HEAD", "/_ping", self.ping),
            Route("GET", "/version", self.version),
            Route("GET", "/info", self.info),
        ]
