"""Archives cross between Atoll and a stock dockerd: what `docker save` writes on one side, `docker load`
reads and runs on the other, with the same image id; `docker cp` and `docker diff` look the same."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.docker.conftest import DockerCLI
from tests.e2e.test_images import busybox_layer


def image_id(cli: DockerCLI, ref: str) -> str:
    return cli.ok("image", "inspect", "--format", "{{.Id}}", ref).strip()


def test_atoll_save_loads_into_dockerd(cli: DockerCLI, stock: DockerCLI, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(busybox_layer())
    cli.ok("import", "-c", 'CMD ["/bin/echo", "made by atoll"]', str(rootfs), "crossing:atoll")
    archive = tmp_path / "atoll.tar"
    cli.ok("save", "-o", str(archive), "crossing:atoll")
    try:
        assert "Loaded image: crossing:atoll" in stock.ok("load", "-i", str(archive))
        assert image_id(stock, "crossing:atoll") == image_id(cli, "crossing:atoll")
        assert stock.ok("run", "--rm", "crossing:atoll").strip() == "made by atoll"
    finally:
        stock.run("rmi", "crossing:atoll")
        cli.run("rmi", "crossing:atoll")


def test_dockerd_save_loads_into_atoll(cli: DockerCLI, stock: DockerCLI, tmp_path: Path) -> None:
    stock.ok("tag", "busybox", "crossing:stock")
    archive = tmp_path / "stock.tar"
    stock.ok("save", "-o", str(archive), "crossing:stock")
    try:
        assert "Loaded image: crossing:stock" in cli.ok("load", "-i", str(archive))
        assert image_id(cli, "crossing:stock") == image_id(stock, "crossing:stock")
        assert cli.ok("run", "--rm", "crossing:stock", "echo", "loaded").strip() == "loaded"
        # Saved again by Atoll (its layers were imported, so they are re-tarred): dockerd still loads it.
        again = tmp_path / "again.tar"
        cli.ok("save", "-o", str(again), "crossing:stock")
        stock.ok("rmi", "crossing:stock")
        assert "Loaded image" in stock.ok("load", "-i", str(again))
        assert stock.ok("run", "--rm", "crossing:stock", "echo", "round").strip() == "round"
    finally:
        stock.run("rmi", "crossing:stock")
        cli.run("rmi", "crossing:stock")


def test_cp_and_diff_match_dockerd(cli: DockerCLI, stock: DockerCLI, tmp_path: Path) -> None:
    src = tmp_path / "note.txt"
    src.write_text("same on both\n")
    seen = {}
    for side, docker in (("atoll", cli), ("dockerd", stock)):
        name = f"cross-{uuid.uuid4().hex[:8]}"
        docker.ok("create", "--name", name, "busybox", "cat", "/tmp/note.txt")
        try:
            docker.ok("cp", str(src), f"{name}:/tmp/note.txt")
            out = docker.ok("start", "-a", name)
            back = tmp_path / f"{side}.txt"
            docker.ok("cp", f"{name}:/tmp/note.txt", str(back))
            seen[side] = (out, back.read_text(), docker.ok("diff", name).splitlines())
        finally:
            docker.run("rm", "-f", name)
    assert seen["atoll"] == seen["dockerd"]
    assert seen["atoll"][2] == ["C /tmp", "A /tmp/note.txt"]
