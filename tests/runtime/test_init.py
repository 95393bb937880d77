"""atoll-init on its own, outside any container: log records, exit files, signals, exec errors."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from atoll.agent.runtime.exitfile import read_exit_file
from atoll.agent.runtime.logs import read_log

TIME = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def spawn(init: Path, tmp: Path, args: Sequence[str], tty: bool = False) -> subprocess.Popen[bytes]:
    """Run atoll-init with fd 3 = log (append) and fd 4 = exit file, as the runtime hands them over."""
    (tmp / "log").touch()
    cmd = [str(init), *(["-t"] if tty else []), "--", *args]
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in cmd)
    return subprocess.Popen(
        ["/bin/sh", "-c", f"exec {quoted} 3>>{tmp}/log 4>{tmp}/exit"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run(init: Path, tmp: Path, args: Sequence[str], tty: bool = False) -> int:
    return spawn(init, tmp, args, tty).wait(timeout=30)


def test_probe_and_usage(init_binary: Path) -> None:
    assert subprocess.run([str(init_binary), "--probe"], check=False).returncode == 0
    bad = subprocess.run([str(init_binary), "sh"], capture_output=True, check=False)
    assert bad.returncode == 2
    assert b"usage" in bad.stderr


def test_streams_exit_code_and_record_format(init_binary: Path, tmp_path: Path) -> None:
    code = run(init_binary, tmp_path, ["/bin/sh", "-c", "echo out; echo err >&2; echo two; exit 3"])
    assert code == 3
    assert read_exit_file(tmp_path / "exit") == (3, 0)
    raw = (tmp_path / "log").read_bytes().splitlines()
    for line in raw:
        stamp, stream, tag, _ = line.split(b" ", 3)
        assert TIME.match(stamp)
        assert stream in (b"stdout", b"stderr")
        assert tag == b"F"
    entries = read_log(tmp_path / "log")
    assert [(e.stream, e.data) for e in entries if e.stream == "stdout"] == [
        ("stdout", b"out\n"),
        ("stdout", b"two\n"),
    ]
    assert [e.data for e in entries if e.stream == "stderr"] == [b"err\n"]
    assert entries == sorted(entries, key=lambda e: e.time)


def test_long_and_unterminated_lines(init_binary: Path, tmp_path: Path) -> None:
    # 40000 bytes then a newline, then 10 bytes without one.
    script = "head -c 40000 /dev/zero | tr '\\0' a; echo; printf 0123456789"
    assert run(init_binary, tmp_path, ["/bin/sh", "-c", script]) == 0
    entries = read_log(tmp_path / "log")
    assert [(e.partial, len(e.data)) for e in entries] == [
        (True, 16384),
        (True, 16384),
        (False, 40000 - 2 * 16384 + 1),
        (True, 10),
    ]
    assert b"".join(e.data for e in entries) == b"a" * 40000 + b"\n0123456789"


def test_signalled_child(init_binary: Path, tmp_path: Path) -> None:
    assert run(init_binary, tmp_path, ["/bin/sh", "-c", "kill -TERM $$"]) == 128 + 15
    assert read_exit_file(tmp_path / "exit") == (143, 15)


def test_exec_errors(init_binary: Path, tmp_path: Path) -> None:
    assert run(init_binary, tmp_path, ["no-such-program"]) == 127
    assert read_exit_file(tmp_path / "exit") == (127, 0)
    [entry] = read_log(tmp_path / "log")
    assert entry.stream == "stderr"
    assert entry.data.startswith(b'atoll-init: exec "no-such-program": ')
    not_exec = tmp_path / "script"
    not_exec.write_text("#!/bin/sh\n")
    assert run(init_binary, tmp_path, [str(not_exec)]) == 126


def test_everything_written_before_exit_is_kept(init_binary: Path, tmp_path: Path) -> None:
    assert run(init_binary, tmp_path, ["seq", "1", "200000"]) == 0
    entries = read_log(tmp_path / "log")
    assert len(entries) == 200000
    assert entries[-1].data == b"200000\n"


def test_signals_are_forwarded(init_binary: Path, tmp_path: Path) -> None:
    script = (
        'trap "echo got-term; exit 7" TERM; trap "echo got-usr1" USR1; '
        "echo ready; while :; do sleep 0.05; done"
    )
    proc = spawn(init_binary, tmp_path, ["/bin/sh", "-c", script])
    try:
        deadline = time.monotonic() + 10
        while b"ready" not in (tmp_path / "log").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGUSR1)
        while b"got-usr1" not in (tmp_path / "log").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 7
    finally:
        proc.kill()
        proc.wait()
    assert [e.data for e in read_log(tmp_path / "log")] == [b"ready\n", b"got-usr1\n", b"got-term\n"]
    assert read_exit_file(tmp_path / "exit") == (7, 0)


def test_tty_mode(init_binary: Path, tmp_path: Path) -> None:
    assert run(init_binary, tmp_path, ["/bin/sh", "-c", "tty; echo err >&2; exit 4"], tty=True) == 4
    entries = read_log(tmp_path / "log")
    assert {e.stream for e in entries} == {"stdout"}
    assert entries[0].data.startswith(b"/dev/pts/")
    assert entries[-1].data == b"err\r\n"


def test_fds_are_not_leaked_to_the_child(init_binary: Path, tmp_path: Path) -> None:
    script = "for f in /proc/$$/fd/*; do readlink $f; done; exit 0"
    assert run(init_binary, tmp_path, ["/bin/sh", "-c", script]) == 0
    targets = [e.data.strip() for e in read_log(tmp_path / "log")]
    assert targets
    assert not [t for t in targets if str(tmp_path).encode() in t]
