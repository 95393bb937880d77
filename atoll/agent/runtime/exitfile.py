"""The exit-status file that ``atoll-init`` writes as its last act: ``<exit_code> <signal>\\n``.

It is written only when the main process ended and init could report it. The container can also end
without it: when process 1 itself dies, which only SIGKILL (``runc kill``, the OOM killer choosing init,
or a host-side kill) can do, since init handles or forwards every other signal. So a container that
the runtime reports as stopped and that has no exit file ended by SIGKILL: the agent records 137
(128 + 9), and asks the cgroup's OOM counter whether the kernel did it.
"""

from __future__ import annotations

from pathlib import Path


def read_exit_file(path: Path) -> tuple[int, int] | None:
    """(exit_code, signal), or None if the file is missing, empty or malformed."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        return None
    code, signal = int(fields[0]), int(fields[1])
    if code > 255 or signal > 64:
        return None
    return code, signal
