"""Settings: one typed home, read from the environment (``ATOLL_*``) with a default per key."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(key: str, default: str) -> str:
    return os.environ.get(f"ATOLL_{key}", default)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(_env("DATA_DIR", "/var/lib/atoll")))
    """Images, instance upper layers, logs and the SQLite database. Must not be on overlayfs."""

    run_dir: Path = field(default_factory=lambda: Path(_env("RUN_DIR", "/run/atoll")))
    """Runtime state (the OCI runtime's root). On tmpfs, so it does not outlive a reboot."""

    api_host: str = field(default_factory=lambda: _env("API_HOST", "127.0.0.1"))
    """Loopback by default: there is no authentication yet."""

    api_port: int = field(default_factory=lambda: int(_env("API_PORT", "7780")))

    cgroup_parent: str = field(default_factory=lambda: _env("CGROUP_PARENT", "atoll"))
    """Every instance's cgroup sits under this name in each hierarchy; tests use a per-run prefix."""

    runtime: str = field(default_factory=lambda: _env("RUNTIME", "auto"))
    """``runc``, ``crun`` or ``auto`` (probe crun, fall back to runc)."""

    host_name: str = field(default_factory=lambda: _env("HOST_NAME", os.uname().nodename))

    reconcile_interval: float = field(default_factory=lambda: float(_env("RECONCILE_INTERVAL", "5")))
    """Seconds between drift checks. Exits are seen at once through pidfds; this catches the rest."""

    db_url: str = field(default_factory=lambda: _env("DB_URL", ""))
    """Empty means SQLite at ``data_dir/atoll.db``."""

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'atoll.db'}"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"
