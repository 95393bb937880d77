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

    net_prefix: str = field(default_factory=lambda: _env("NET_PREFIX", "at"))
    """Starts every link name of the dataplane (``atb-1a2b3c4d``); 1-5 characters. Tests use their own."""

    nft_table: str = field(default_factory=lambda: _env("NFT_TABLE", "atoll"))
    """The nftables table (inet and arp families) the dataplane owns; nothing else is touched."""

    registry_mirrors: str = field(default_factory=lambda: _env("REGISTRY_MIRRORS", ""))
    """``REGISTRY=URL,...``, e.g. ``docker.io=http://127.0.0.1:5000``: pulls try these first, in order."""

    insecure_registries: str = field(default_factory=lambda: _env("INSECURE_REGISTRIES", ""))
    """``host:port,...`` reached without TLS verification or over plain HTTP. Empty: TLS always verified."""

    registry_ca_dir: Path = field(default_factory=lambda: Path(_env("REGISTRY_CA_DIR", "/etc/atoll/certs.d")))
    """``<dir>/<host:port>/*.crt`` are CAs trusted for that registry, as in Docker's certs.d."""

    cluster_host: str = field(default_factory=lambda: _env("CLUSTER_HOST", "0.0.0.0"))
    """``atoll serve``: where the agent-facing mTLS listener binds. Every peer must show a certificate."""

    cluster_port: int = field(default_factory=lambda: int(_env("CLUSTER_PORT", "7781")))

    cluster_advertise: str = field(default_factory=lambda: _env("CLUSTER_ADVERTISE", ""))
    """``host:port`` that join tokens tell new hosts to dial; empty: this host's name and the port."""

    heartbeat_interval: float = field(default_factory=lambda: float(_env("HEARTBEAT_INTERVAL", "5")))
    """Seconds between an agent's heartbeats."""

    heartbeat_timeout: float = field(default_factory=lambda: float(_env("HEARTBEAT_TIMEOUT", "15")))
    """Seconds of silence after which the controller marks a host down (three missed heartbeats)."""

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'atoll.db'}"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"
