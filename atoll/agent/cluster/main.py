"""Entry points of ``atoll join`` and ``atoll agent`` (the CLI reaches them by import name only)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from atoll.agent.agent import AgentConfig
from atoll.agent.cluster.daemon import run_agent
from atoll.agent.cluster.join import join
from atoll.agent.registry.options import RegistryOptions, parse_insecure, parse_mirrors
from atoll.heap import limit_malloc_arenas
from atoll.settings import Settings


def agent_config(settings: Settings) -> AgentConfig:
    return AgentConfig(
        host_id="",  # taken from the membership on disk
        data_dir=settings.data_dir,
        run_dir=settings.run_dir,
        cgroup_parent=settings.cgroup_parent,
        runtime=settings.runtime,
        reconcile_interval=settings.reconcile_interval,
        registries=RegistryOptions(
            mirrors=parse_mirrors(settings.registry_mirrors),
            insecure=parse_insecure(settings.insecure_registries),
            ca_dir=settings.registry_ca_dir,
        ),
        net_prefix=settings.net_prefix,
        nft_table=settings.nft_table,
        underlay_ip=settings.underlay_ip,
        vxlan_port=settings.vxlan_port,
        publish_pool=settings.publish_cidr,
        ip_forward=settings.ip_forward,
    )


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per RPC call otherwise


def run(settings: Settings) -> None:
    _logging()
    limit_malloc_arenas()
    asyncio.run(
        run_agent(
            agent_config(settings), heartbeat_interval=settings.heartbeat_interval, name=settings.host_name
        )
    )


def join_and_run(settings: Settings, token: str, *, listen: str, advertise: str, start: bool) -> None:
    _logging()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    membership = join(
        token, Path(settings.data_dir), listen=listen, advertise=advertise, name=settings.host_name
    )
    print(f"joined the cluster at {membership.controller} as host {membership.host_id}", flush=True)
    if start:
        run(settings)
