"""``atoll image``: import, build, ls, rm, tag, inspect."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from atoll.cli import context
from atoll.cli.humanize import ago, human_size, short_id, split_tag
from atoll.cli.output import for_each, inspect_each, print_table
from atoll.cli.parsing import parse_argv, parse_env, parse_labels
from atoll.cli.upload import open_source, progress_bar
from atoll.schemas import Image, ImageConfigWire, ImageRemoved

app = typer.Typer(help="Manage images.", no_args_is_help=True)

Source = Annotated[str, typer.Argument(help="A file, a directory, or - for stdin.", metavar="SOURCE")]


def check_layout(path: Path) -> str | None:
    if (path / "oci-layout").is_file() or (path / "manifest.json").is_file():
        return None
    return f"{path} is neither an OCI image layout (no oci-layout file) nor an unpacked `docker save`"


@app.command("import")
def import_(ctx: typer.Context, source: Source) -> None:
    """Import a `docker save` archive, an OCI layout archive, or an OCI layout directory."""
    api = context.api(ctx)
    with open_source(source, check_layout) as upload, progress_bar(upload) as progress:
        images = api.import_image(upload.body, progress, size=upload.size)
    for image in images:
        for tag in image.repo_tags:
            typer.echo(f"Loaded image: {tag}")
        if not image.repo_tags:
            typer.echo(f"Loaded image ID: {image.id}")


@app.command()
def build(
    ctx: typer.Context,
    source: Source,
    tag: Annotated[str, typer.Option("--tag", "-t", help="NAME[:TAG] of the new image.")],
    cmd: Annotated[str | None, typer.Option("--cmd", help="Default command: a JSON array or words.")] = None,
    entrypoint: Annotated[str | None, typer.Option("--entrypoint", help="A JSON array or words.")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE, or KEY to copy.")] = None,
    workdir: Annotated[str | None, typer.Option("--workdir", "-w", help="Working directory.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Default user[:group].")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE label.")] = None,
    stop_signal: Annotated[str | None, typer.Option("--stop-signal", help="Signal to stop it.")] = None,
    expose: Annotated[list[str] | None, typer.Option("--expose", help="PORT[/PROTO] to expose.")] = None,
) -> None:
    """Build a one-layer image from a root filesystem: a directory (tarred with its ownership, modes and
    links) or a tarball."""
    config = ImageConfigWire(
        cmd=parse_argv(cmd) if cmd is not None else None,
        entrypoint=parse_argv(entrypoint) if entrypoint is not None else None,
        env=parse_env(env or []),
        working_dir=workdir or "",
        user=user or "",
        labels=parse_labels(label or []),
        stop_signal=stop_signal or "",
        exposed_ports=[p if "/" in p else f"{p}/tcp" for p in expose or []],
    )
    api = context.api(ctx)
    with open_source(source) as upload, progress_bar(upload) as progress:
        image = api.build_image(upload.body, tag=tag, config=config, progress=progress, size=upload.size)
    typer.echo(image.id)


@app.command("ls")
def ls(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only ids.")] = False,
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Full ids.")] = False,
    digests: Annotated[bool, typer.Option("--digests", help="Show repo digests.")] = False,
) -> None:
    """List images."""
    images = sorted(context.api(ctx).images(), key=lambda i: i.created, reverse=True)
    if quiet:
        for image in images:
            typer.echo(image.id if no_trunc else short_id(image.id))
        return
    now = datetime.now(UTC)
    rows = [row for image in images for row in _image_rows(image, now, no_trunc, digests)]
    head = ["REPOSITORY", "TAG", *(["DIGEST"] if digests else []), "IMAGE ID", "CREATED", "SIZE"]
    print_table(head, rows)


def _image_rows(image: Image, now: datetime, no_trunc: bool, digests: bool) -> list[list[str]]:
    """One row per tag, as ``docker images``; untagged digests show as ``<none>`` tags of their repo."""
    ident = image.id if no_trunc else short_id(image.id)
    tail = [ident, ago(image.created, now), human_size(image.size)]
    by_repo = {d.partition("@")[0]: d.partition("@")[2] for d in image.repo_digests}
    names = [split_tag(t) for t in image.repo_tags]
    names += [(repo, "<none>") for repo in by_repo if repo not in {r for r, _ in names}]
    names = names or [("<none>", "<none>")]
    if not digests:
        return [[repo, tag, *tail] for repo, tag in names]
    return [[repo, tag, by_repo.get(repo, "<none>"), *tail] for repo, tag in names]


@app.command()
def rm(
    ctx: typer.Context,
    refs: Annotated[list[str], typer.Argument(help="Image references or ids.")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Remove even if tagged or in use.")] = False,
) -> None:
    """Remove images."""
    api = context.api(ctx)
    for_each(refs, lambda ref: api.remove_image(ref, force=force), show=_show_removed)


def _show_removed(ref: str, removed: ImageRemoved) -> None:
    for tag in removed.untagged:
        typer.echo(f"Untagged: {tag}")
    for ident in removed.deleted:
        typer.echo(f"Deleted: {ident}")


@app.command()
def tag(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Existing image.", metavar="SOURCE_IMAGE")],
    target: Annotated[str, typer.Argument(help="New NAME[:TAG].", metavar="TARGET_IMAGE")],
) -> None:
    """Give an image another name."""
    context.api(ctx).tag_image(source, target)


@app.command()
def inspect(
    ctx: typer.Context, refs: Annotated[list[str], typer.Argument(help="Image references or ids.")]
) -> None:
    """Show images as JSON."""
    inspect_each(refs, context.api(ctx).inspect_image)
