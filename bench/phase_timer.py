"""`atoll up` with a timer around each step of the Docker path, for bench/docker_phases.py.

Run as `python -m bench.phase_timer up` with ATOLL_PHASES_FILE set: before the CLI starts, the
functions named in ``TARGETS`` are wrapped (in this process only; the project's code is unchanged) and
each call appends one JSON line ``{"name", "start", "ms"}`` to that file. Nested steps show up as their
own lines, so a parent's time includes its children's.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

# (module, attribute path, label). Module-level names are patched where they are used (the agent
# imports mount_overlay into its own namespace, for instance).
TARGETS: list[tuple[str, str, str]] = [
    ("atoll.agent.agent", "Agent.create_instance", "agent.create_instance"),
    ("atoll.agent.agent", "Agent.start_instance", "agent.start_instance"),
    ("atoll.agent.agent", "Agent._launch", "agent._launch"),
    ("atoll.agent.agent", "Agent._handle_exit", "agent._handle_exit"),
    ("atoll.agent.agent", "Agent._report_exit", "agent._report_exit"),
    ("atoll.agent.agent", "Agent._cleanup_runtime", "agent._cleanup_runtime"),
    ("atoll.agent.agent", "Agent.remove_instance", "agent.remove_instance"),
    ("atoll.agent.agent", "Agent._purge", "agent._purge"),
    ("atoll.agent.agent", "Agent._fetch_security", "agent._fetch_security"),
    ("atoll.agent.agent", "mount_overlay", "overlay mount"),
    ("atoll.agent.agent", "unmount", "overlay unmount"),
    ("atoll.agent.agent", "write_etc_files", "write /etc files"),
    ("atoll.agent.agent", "build_config", "build config.json"),
    ("atoll.agent.agent", "resolve_user", "resolve user"),
    ("atoll.agent.agent", "populate", "populate volumes"),
    ("atoll.agent.agent", "remove_cgroup", "remove cgroup"),
    ("atoll.agent.runtime.oci_runtime", "OciRuntime.run_detached", "runtime run"),
    ("atoll.agent.runtime.oci_runtime", "OciRuntime.delete", "runtime delete"),
    ("atoll.agent.runtime.oci_runtime", "OciRuntime.state", "runtime state"),
    ("atoll.agent.runtime.oci_runtime", "OciRuntime.kill", "runtime kill"),
    ("atoll.agent.net.dataplane", "HostNetwork.attach", "net attach"),
    ("atoll.agent.net.dataplane", "HostNetwork.release", "net release"),
    ("atoll.agent.net.dnsserver", "NameService.serve", "dns serve"),
    ("atoll.agent.net.dnsserver", "NameService.stop", "dns stop"),
    ("atoll.agent.net.overlaysync", "OverlaySync.refresh", "overlay refresh"),
    ("atoll.services.instances", "create", "svc instances.create"),
    ("atoll.services.instances", "remove", "svc instances.remove"),
    ("atoll.services.lifecycle", "start", "svc lifecycle.start"),
    ("atoll.services.lifecycle", "wait", "svc lifecycle.wait"),
    ("atoll.agent.net.nft", "apply", "  nft -f (whole table)"),
    ("atoll.agent.net.nft", "render", "  nft render"),
    ("atoll.agent.net.secrules", "render", "  secgroup rules render"),
    ("atoll.agent.net.netns", "create", "  netns create"),
    ("atoll.agent.net.netns", "remove", "  netns remove"),
    ("atoll.agent.net.netlink", "add_veth", "  veth add"),
    ("atoll.agent.net.dataplane", "HostNetwork.set_security", "  net set_security"),
    ("atoll.agent.net.overlaysync", "OverlaySync.report", "  overlay report host network"),
    ("atoll.agent.net.overlay", "OverlayPlane.converge", "  overlay converge"),
    ("atoll.services.control", "LocalControlPlane.overlay_networks", "  ctl overlay_networks"),
    ("atoll.services.control", "LocalControlPlane.security", "  ctl security"),
    ("atoll.services.control", "LocalControlPlane.instance_exited", "  ctl instance_exited"),
    ("atoll.services.control", "LocalControlPlane.network_names", "  ctl network_names"),
    ("atoll.agent.runtime.owncgroups", "OwnCgroups.create", "  own cgroups create"),
    ("sqlalchemy.orm", "Session.commit", "db commit"),
    ("atoll.agent.net.dataplane", "HostNetwork._wire_instance", "  net wire instance"),
    ("atoll.agent.net.dataplane", "HostNetwork._isolate", "  net isolate released veth"),
    ("atoll.agent.net.dataplane", "HostNetwork._teardown", "net teardown (background)"),
    ("atoll.agent.net.dataplane", "HostNetwork._apply_rules", "  net apply rules"),
    ("atoll.agent.net.wiring", "configure_inside", "  net configure inside (make)"),
    ("atoll.agent.net.bigtcp", "apply", "  net BIG TCP sizes"),
    ("atoll.agent.net.netlink", "links", "  netlink link dump"),
    ("atoll.agent.net.netlink", "configure_nic", "  netlink configure nic"),
    ("atoll.agent.net.netlink", "attach", "  netlink attach to bridge"),
    ("atoll.agent.net.netlink", "delete", "  netlink delete"),
    ("atoll.agent.net.netlink", "add_bridge", "  netlink add bridge"),
    ("atoll.agent.net.publish", "Addresses.scan", "  publish scan"),
    ("atoll.agent.net.nftdiff", "apply", "  nftdiff apply"),
    ("atoll.agent.net.libnft", "run", "  libnft run"),
    ("atoll.agent.net.netns", "run_in", "  netns run_in"),
]

_ID = re.compile(r"/[0-9a-f]{12,64}(?=/|$)")


def _record(name: str, start: float, out: Any) -> None:
    out.write(json.dumps({"name": name, "start": start, "ms": (time.perf_counter() - start) * 1000}) + "\n")


def _wrap(fn: Callable[..., Any], name: str, out: Any) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                _record(name, start, out)

        return timed_async

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _record(name, start, out)

    return timed


def _wrap_http(out: Any) -> None:
    from atoll.api.docker import server

    classes = [c for c in vars(server).values() if inspect.isclass(c)]
    conn_cls = next(c for c in classes if hasattr(c, "_answer") and hasattr(c, "_respond"))
    answer, respond = conn_cls._answer, conn_cls._respond

    async def timed_answer(self: Any, request: Any) -> Any:
        start = time.perf_counter()
        try:
            return await answer(self, request)
        finally:
            path = _ID.sub("/{id}", re.sub(r"^/v[0-9.]+", "", request.path))
            _record(f"http {request.method} {path}", start, out)

    async def timed_respond(self: Any, request: Any, reply: Any) -> Any:
        start = time.perf_counter()
        try:
            return await respond(self, request, reply)
        finally:
            _record("http respond", start, out)

    conn_cls._answer = timed_answer
    conn_cls._respond = timed_respond


def install(path: str) -> None:
    out = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    for module_name, attr, label in TARGETS:
        try:  # a step the code under test does not have (an older tree) is skipped
            owner: Any = importlib.import_module(module_name)
            *parents, last = attr.split(".")
            for part in parents:
                owner = getattr(owner, part)
            setattr(owner, last, _wrap(getattr(owner, last), label, out))
        except (ImportError, AttributeError):
            continue
    _wrap_http(out)


def _profile(path: str) -> None:
    """With ATOLL_PROFILE set: a cProfile of the whole process, written there on SIGUSR1."""
    import cProfile
    import signal

    profiler = cProfile.Profile()

    def dump(*_: Any) -> None:
        profiler.disable()
        profiler.dump_stats(path)
        profiler.enable()

    signal.signal(signal.SIGUSR1, dump)
    profiler.enable()


def main() -> None:
    install(os.environ["ATOLL_PHASES_FILE"])
    if os.environ.get("ATOLL_PROFILE"):
        _profile(os.environ["ATOLL_PROFILE"])
    from atoll.cli.main import app

    app()


if __name__ == "__main__":
    main()
