"""``atoll run``: create and start an instance, then follow its output until it exits (like ``docker run``).

Exit codes follow docker: the command's own exit code in the foreground, 125 when the instance could not
be created or started, 130 when Ctrl-C detaches the terminal from a still running instance.

``--rm`` in the foreground is carried out by this command (it waits, then removes), so the exit code is
never lost to an early removal; with ``--detach`` it is left to the server (``auto_remove``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from atoll.cli import context
from atoll.cli.netopts import instance_networks
from atoll.cli.output import USER_ERRORS, error_message, fail, print_error, write_frames
from atoll.cli.parsing import parse_env, parse_labels, parse_memory, parse_restart
from atoll.cli.publishopts import parse_publishes
from atoll.cli.volopts import instance_mounts
from atoll.client import AtollAPI, AtollError
from atoll.schemas import (
    Instance,
    InstanceCreate,
    InstanceNetwork,
    MountRequest,
    PublishRequest,
    ResourcesWire,
    RestartPolicyWire,
)

EXIT_RUN_FAILED = 125
EXIT_INTERRUPTED = 130

app = typer.Typer()


def _memory_swap(text: str) -> int:
    return parse_memory(text, allow_unlimited=True)


def read_env_file(path: Path) -> list[str]:
    """Docker's --env-file: one KEY=VALUE (or KEY) a line; blank lines and ``#`` comments are skipped."""
    lines = path.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def build_spec(
    *,
    image: str,
    command: list[str] | None,
    name: str | None = None,
    env: list[str] | None = None,
    entrypoint: str | None = None,
    workdir: str | None = None,
    user: str | None = None,
    hostname: str | None = None,
    labels: list[str] | None = None,
    read_only: bool = False,
    tty: bool = False,
    resources: ResourcesWire | None = None,
    restart: RestartPolicyWire | None = None,
    stop_signal: str | None = None,
    stop_timeout: int | None = None,
    auto_remove: bool = False,
    networks: list[InstanceNetwork] | None = None,
    mounts: list[MountRequest] | None = None,
    security_groups: list[str] | None = None,
    publish: list[PublishRequest] | None = None,
    publish_all: bool = False,
) -> InstanceCreate:
    """Options to request. Only what the user gave is set, so the server's defaults apply to the rest."""
    fields: dict[str, object] = {"image": image}
    if command:
        fields["command"] = list(command)
    if entrypoint is not None:
        # Docker never splits --entrypoint; an empty one resets the image's entrypoint.
        fields["entrypoint"] = [entrypoint] if entrypoint else []
    optional = {
        "name": name,
        "working_dir": workdir,
        "user": user,
        "hostname": hostname,
        "stop_signal": stop_signal,
        "stop_timeout": stop_timeout,
        "resources": resources,
        "restart_policy": restart,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    if env:
        fields["env"] = parse_env(env)
    if labels:
        fields["labels"] = parse_labels(labels)
    if read_only:
        fields["readonly_rootfs"] = True
    if tty:
        fields["tty"] = True
    if auto_remove:
        fields["auto_remove"] = True
    if networks:
        fields["networks"] = list(networks)
    if mounts:
        fields["mounts"] = list(mounts)
    if security_groups:
        fields["security_groups"] = list(security_groups)
    if publish:
        fields["publish"] = list(publish)
    if publish_all:
        fields["publish_all"] = True
    return InstanceCreate.model_validate(fields)


def build_resources(
    *,
    memory: int | None,
    memory_swap: int | None,
    cpus: float | None,
    cpu_quota: int | None,
    cpu_period: int | None,
    cpu_shares: int | None,
    pids_limit: int | None,
) -> ResourcesWire | None:
    values = {
        "memory": memory,
        "memory_swap": memory_swap,
        "cpus": cpus,
        "cpu_quota": cpu_quota,
        "cpu_period": cpu_period,
        "cpu_shares": cpu_shares,
        # Docker reads 0 or -1 as "no limit".
        "pids_limit": pids_limit if pids_limit is not None and pids_limit > 0 else None,
    }
    given = {k: v for k, v in values.items() if v is not None}
    return ResourcesWire.model_validate(given) if given else None


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(help="Image reference (name[:tag], or id).")],
    command: Annotated[list[str] | None, typer.Argument(help="Command and arguments.")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in background, print id.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="Name of the instance.")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE, or KEY to copy.")] = None,
    env_file: Annotated[list[Path] | None, typer.Option("--env-file", help="KEY=VALUE lines.")] = None,
    entrypoint: Annotated[str | None, typer.Option("--entrypoint", help='Override ("" resets).')] = None,
    workdir: Annotated[str | None, typer.Option("--workdir", "-w", help="Working directory.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="user[:group], names or ids.")] = None,
    hostname: Annotated[str | None, typer.Option("--hostname", "-h", help="Host name.")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE label.")] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Read-only root filesystem.")] = False,
    tty: Annotated[bool, typer.Option("--tty", "-t", help="Allocate a pseudo-TTY.")] = False,
    memory: Annotated[
        int | None, typer.Option("--memory", "-m", parser=parse_memory, metavar="SIZE", help="64m, 1g")
    ] = None,
    memory_swap: Annotated[
        int | None,
        typer.Option(
            "--memory-swap", parser=_memory_swap, metavar="SIZE", help="Memory + swap; -1: no limit."
        ),
    ] = None,
    cpus: Annotated[float | None, typer.Option("--cpus", help="Number of CPUs.")] = None,
    cpu_quota: Annotated[int | None, typer.Option("--cpu-quota", help="CFS quota (µs).")] = None,
    cpu_period: Annotated[int | None, typer.Option("--cpu-period", help="CFS period (µs).")] = None,
    cpu_shares: Annotated[int | None, typer.Option("--cpu-shares", "-c", help="Relative weight.")] = None,
    pids_limit: Annotated[int | None, typer.Option("--pids-limit", help="Max processes (-1: none).")] = None,
    restart: Annotated[
        RestartPolicyWire | None,
        typer.Option(
            "--restart",
            parser=parse_restart,
            metavar="POLICY",
            help="no|on-failure[:N]|always|unless-stopped",
        ),
    ] = None,
    stop_signal: Annotated[str | None, typer.Option("--stop-signal", help="Signal to stop it.")] = None,
    stop_timeout: Annotated[int | None, typer.Option("--stop-timeout", help="Seconds before a kill.")] = None,
    rm: Annotated[bool, typer.Option("--rm", help="Remove it when it exits.")] = False,
    network: Annotated[
        list[str] | None,
        typer.Option("--network", "--net", help="NET or name=NET,ip=ADDR,alias=NAME; repeatable."),
    ] = None,
    ip: Annotated[str | None, typer.Option("--ip", help="Fixed address on the first network.")] = None,
    network_alias: Annotated[
        list[str] | None, typer.Option("--network-alias", help="Alias on the first network.")
    ] = None,
    volume: Annotated[
        list[str] | None,
        typer.Option("--volume", "-v", help="[NAME|/HOST:]DEST[:ro|rw|nocopy]; repeatable."),
    ] = None,
    tmpfs: Annotated[
        list[str] | None, typer.Option("--tmpfs", help="DEST[:size=SIZE,mode=OCTAL]; repeatable.")
    ] = None,
    mount: Annotated[
        list[str] | None,
        typer.Option("--mount", help="type=volume|bind|tmpfs,src=..,dst=..[,readonly]; repeatable."),
    ] = None,
    security_group: Annotated[
        list[str] | None,
        typer.Option("--security-group", "--sg", help="Security group of its NICs; repeatable."),
    ] = None,
    publish: Annotated[
        list[str] | None,
        typer.Option("--publish", "-p", help="[HOST_IP:][HOST_PORT:]PORT[/PROTO]; repeatable."),
    ] = None,
    publish_all: Annotated[
        bool, typer.Option("--publish-all", "-P", help="Publish the image's exposed ports (random ports).")
    ] = False,
) -> None:
    """Create and start an instance, and follow its output until it exits."""
    if rm and restart is not None and restart.name != "no":
        fail("conflicting options: --restart and --rm", EXIT_RUN_FAILED)
    try:
        envs = [line for path in env_file or [] for line in read_env_file(path)] + list(env or [])
        resources = build_resources(
            memory=memory,
            memory_swap=memory_swap,
            cpus=cpus,
            cpu_quota=cpu_quota,
            cpu_period=cpu_period,
            cpu_shares=cpu_shares,
            pids_limit=pids_limit,
        )
        spec = build_spec(
            image=image,
            command=command,
            name=name,
            env=envs,
            entrypoint=entrypoint,
            workdir=workdir,
            user=user,
            hostname=hostname,
            labels=label,
            read_only=read_only,
            tty=tty,
            resources=resources,
            restart=restart,
            stop_signal=stop_signal,
            stop_timeout=stop_timeout,
            auto_remove=rm and detach,
            networks=instance_networks(network or [], ip, network_alias),
            mounts=instance_mounts(volume or [], tmpfs or [], mount or []),
            security_groups=security_group,
            publish=parse_publishes(publish or []),
            publish_all=publish_all,
        )
    except USER_ERRORS as exc:
        fail(exc, EXIT_RUN_FAILED)
    api = context.api(ctx)
    inst = _create_and_start(api, spec, remove_on_failure=rm)
    if detach:
        typer.echo(inst.id)
        return
    raise typer.Exit(_follow(api, inst, remove=rm))


def _create_and_start(api: AtollAPI, spec: InstanceCreate, *, remove_on_failure: bool) -> Instance:
    try:
        inst = api.create_instance(spec)
    except USER_ERRORS as exc:
        fail(exc, EXIT_RUN_FAILED)
    try:
        return api.start_instance(inst.id)
    except USER_ERRORS as exc:
        if remove_on_failure:
            _remove_quietly(api, inst.id)
        fail(exc, EXIT_RUN_FAILED)


def _follow(api: AtollAPI, inst: Instance, *, remove: bool) -> int:
    """Stream the output until the instance exits; return its exit code."""
    ref = inst.name or inst.id
    try:
        with api.logs(inst.id, follow=True) as frames:
            write_frames(frames)
        result = api.wait_instance(inst.id)
    except KeyboardInterrupt:
        hint = f"`atoll logs -f {ref}` follows it again, `atoll stop {ref}` stops it"
        if remove:
            hint += f", `atoll rm -f {ref}` removes it (--rm no longer applies)"
        print_error(f"detached from {ref}, which is still running: {hint}.")
        return EXIT_INTERRUPTED
    except USER_ERRORS as exc:
        fail(exc, EXIT_RUN_FAILED)
    if result.error:
        print_error(result.error)
    if remove:
        _remove_quietly(api, inst.id)
    return result.exit_code


def _remove_quietly(api: AtollAPI, ref: str) -> None:
    try:
        api.remove_instance(ref, force=True, volumes=True)  # --rm takes anonymous volumes, as in Docker
    except AtollError as exc:
        if exc.code != "not_found":
            print_error(f"could not remove {ref}: {error_message(exc)}")
    except USER_ERRORS as exc:
        print_error(f"could not remove {ref}: {error_message(exc)}")
