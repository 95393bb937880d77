"""Building atoll-init."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from atoll.agent.runtime.initbin import ensure_init_binary
from atoll.model.errors import RuntimeFailure


def test_builds_once_and_atomically(tmp_path: Path) -> None:
    binary = ensure_init_binary(tmp_path / "bin")
    assert binary == tmp_path / "bin" / "atoll-init"
    assert subprocess.run([str(binary), "--probe"], check=False).returncode == 0
    # Static: no interpreter, so it runs in any image.
    assert b"ld-linux" not in binary.read_bytes()[:4096]
    mtime = binary.stat().st_mtime_ns
    assert ensure_init_binary(tmp_path / "bin") == binary
    assert binary.stat().st_mtime_ns == mtime
    assert [p.name for p in binary.parent.iterdir()] == ["atoll-init"]


def test_rebuilds_when_older_than_the_source(tmp_path: Path) -> None:
    binary = ensure_init_binary(tmp_path)
    binary.write_bytes(b"stale")
    os.utime(binary, (0, 0))
    ensure_init_binary(tmp_path)
    assert binary.read_bytes()[:4] == b"\x7fELF"


def test_clear_error_without_a_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RuntimeFailure, match="cannot build atoll-init"):
        ensure_init_binary(tmp_path / "bin")
    assert not (tmp_path / "bin" / "atoll-init").exists()
