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

    db_url: str = field(default_factory=lambda: _env("DB_URL", _env("DATABASE_URL", "")))
    """Empty means SQLite at ``data_dir/atoll.db``. ``ATOLL_DATABASE_URL`` is the same setting; for a
    cluster, ``postgresql+psycopg://user@host/db`` (docs/cluster.md)."""

    net_prefix: str = field(default_factory=lambda: _env("NET_PREFIX", "at"))
    """Starts every link name of the dataplane (``atb-1a2b3c4d``); 1-5 characters. Tests use their own."""

    nft_table: str = field(default_factory=lambda: _env("NFT_TABLE", "atoll"))
    """The nftables table (inet and arp families) the dataplane owns; nothing else is touched."""

    publish_cidr: str = field(default_factory=lambda: _env("PUBLISH_CIDR", "169.254.240.0/20"))
    """Addresses of the veths that carry published ports (``-p``), a /31 per instance; host-local."""

    ip_forward: bool = field(default_factory=lambda: _env("IP_FORWARD", "1") not in ("0", "false", "no"))
    """Turn on ``net.ipv4.ip_forward`` when ports are published (Docker's ``--ip-forward``)."""

    registry_mirrors: str = field(default_factory=lambda: _env("REGISTRY_MIRRORS", ""))
    """``REGISTRY=URL,...``, e.g. ``docker.io=http://127.0.0.1:5000``: pulls try these first, in order."""

    insecure_registries: str = field(default_factory=lambda: _env("INSECURE_REGISTRIES", ""))
    """``host:port,...`` reached without TLS verification or over plain HTTP. Empty: TLS always verified."""

    registry_ca_dir: Path = field(default_factory=lambda: Path(_env("REGISTRY_CA_DIR", "/etc/atoll/certs.d")))
    """``<dir>/<host:port>/*.crt`` are CAs trusted for that registry, as in Docker's certs.d."""

    image_gc_interval: float = field(default_factory=lambda: float(_env("IMAGE_GC_INTERVAL", "300")))
    """Seconds between passes of the image GC policy (docs/images.md); 0 turns it off."""

    image_gc_high: float = field(default_factory=lambda: float(_env("IMAGE_GC_HIGH", "85")))
    """Percent of the image filesystem in use that starts removing unused images, LRU first..."""

    image_gc_low: float = field(default_factory=lambda: float(_env("IMAGE_GC_LOW", "80")))
    """...down to this percent. kubelet's defaults."""

    image_gc_min_age: float = field(default_factory=lambda: float(_env("IMAGE_GC_MIN_AGE", "3600")))
    """Seconds an image is safe after it was cataloged or last used, so a pull is never undone at once."""

    underlay_ip: str = field(default_factory=lambda: _env("UNDERLAY_IP", ""))
    """This host's address for VXLAN (overlay networks). Empty: that of the default route's interface."""

    vxlan_port: int = field(default_factory=lambda: int(_env("VXLAN_PORT", "4789")))
    """The UDP port of VXLAN between hosts (IANA's 4789); every host of a cloud must use the same."""

    big_tcp: str = field(default_factory=lambda: _env("BIG_TCP", "auto"))
    """GSO/GRO size of tenant bridges and veths (BIG TCP, docs/networking.md): ``auto`` (192 KiB when
    the kernel has it, Linux 6.3+), ``off``, or a size in bytes."""

    fast_path: bool = field(default_factory=lambda: _env("FAST_PATH", "1") not in ("0", "false", "no", "off"))
    """Established TCP flows between instances skip the bridges (eBPF; docs/networking.md). ``off``: not."""

    bind_mounts: str = field(default_factory=lambda: _env("BIND_MOUNTS", "allow"))
    """``allow``, ``deny``, or host directories (comma-separated) that bind sources must lie under.
    ``allow`` suits a single-node cloud whose users own the host; see docs/volumes.md for tenants."""

    docker_socket: str = field(default_factory=lambda: _env("DOCKER_SOCKET", "/run/atoll/docker.sock"))
    """The Docker API's unix socket (``DOCKER_HOST=unix://...``); empty: none."""

    docker_tcp: str = field(default_factory=lambda: _env("DOCKER_TCP", "127.0.0.1:2375"))
    """The Docker API's TCP ``host:port``, loopback by default (no authentication yet); empty: none."""

    default_address_pools: str = field(
        default_factory=lambda: _env("DEFAULT_ADDRESS_POOLS", "10.96.0.0/11:24")
    )
    """``CIDR:SIZE,...``: where subnets created as ``auto`` get their CIDR (skipping the hosts' networks)."""

    cluster_host: str = field(default_factory=lambda: _env("CLUSTER_HOST", "0.0.0.0"))
    """``atoll serve``: where the agent-facing mTLS listener binds. Every peer must show a certificate."""

    cluster_port: int = field(default_factory=lambda: int(_env("CLUSTER_PORT", "7781")))

    cluster_advertise: str = field(default_factory=lambda: _env("CLUSTER_ADVERTISE", ""))
    """``host:port`` that join tokens tell new hosts to dial; empty: this host's name and the port."""

    heartbeat_interval: float = field(default_factory=lambda: float(_env("HEARTBEAT_INTERVAL", "5")))
    """Seconds between an agent's heartbeats."""

    heartbeat_timeout: float = field(default_factory=lambda: float(_env("HEARTBEAT_TIMEOUT", "15")))
    """Seconds of silence after which the controller marks a host down (three missed heartbeats)."""

    lease_interval: float = field(default_factory=lambda: float(_env("LEASE_INTERVAL", "2")))
    """``atoll serve`` on PostgreSQL: seconds between tries for the controller lease (and checks that it
    is still held); a dead leader's loops move to another controller within about this time."""

    docker_tls: str = field(default_factory=lambda: _env("DOCKER_TLS", ""))
    """The Docker API over TLS, ``host:port`` (dockerd's ``-H tcp://...:2376 --tlsverify``); empty: none.
    This one may face the network: with a CA, every client must show a certificate it signed."""

    docker_tls_ca: str = field(default_factory=lambda: _env("DOCKER_TLS_CA", "/etc/atoll/docker/ca.pem"))
    """The CA that signs client certificates (``--tlscacert``); empty: clients go unverified (``--tls``)."""

    docker_tls_cert: Path = field(
        default_factory=lambda: Path(_env("DOCKER_TLS_CERT", "/etc/atoll/docker/server-cert.pem"))
    )
    """The listener's certificate (``--tlscert``); ``atoll docker-certs`` makes one, and a CA."""

    docker_tls_key: Path = field(
        default_factory=lambda: Path(_env("DOCKER_TLS_KEY", "/etc/atoll/docker/server-key.pem"))
    )

    @property
    def docker_addresses(self) -> list[str]:
        out = [f"unix://{self.docker_socket}"] if self.docker_socket else []
        return out + ([f"tcp://{self.docker_tcp}"] if self.docker_tcp else [])

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'atoll.db'}"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"
