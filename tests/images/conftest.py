"""Fixtures for the image store tests: a fresh store per test, a canary outside it, real overlay mounts."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from atoll.agent.images import ImageStore, is_mounted, mount_overlay, unmount


def _mounts_under(base: str) -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f if line.split()[4].startswith(base)}


@pytest.fixture(autouse=True)
def no_mounts_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail a test that leaves a mount under pytest's temp directory (after unmounting it)."""
    base = str(tmp_path_factory.getbasetemp())
    before = _mounts_under(base)
    yield
    left = _mounts_under(base) - before
    for mountpoint in sorted(left, reverse=True):
        unmount(Path(mountpoint))
    assert not left, f"test left mounts behind: {sorted(left)}"


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "store")


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    """A directory outside the store that hostile archives aim at; it must stay exactly as it was."""
    path = tmp_path / "canary"
    path.mkdir()
    (path / "keep").write_text("untouched")
    yield path
    assert sorted(p.name for p in path.iterdir()) == ["keep"]
    assert (path / "keep").read_text() == "untouched"


Mounter = Callable[[Sequence[Path]], Path]


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[Mounter]:
    """Mount layers (bottom first) as an overlay under tmp_path; everything is unmounted in teardown."""
    mounted: list[Path] = []

    def mount(lowers: Sequence[Path]) -> Path:
        n = len(mounted)
        upper, work, merged = (tmp_path / f"ovl{n}-{x}" for x in ("upper", "work", "merged"))
        for d in (upper, work, merged):
            d.mkdir()
        mount_overlay(lowers, upper, work, merged)
        mounted.append(merged)
        return merged

    yield mount
    for merged in mounted:
        unmount(merged)
        assert not is_mounted(merged)
