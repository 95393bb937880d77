"""The agent's side of overlay networks and host reports: fetch this host's overlay description from the
control plane and converge the VXLAN devices to it; report the host's own networks when they change.

Both run on every reconcile (level-triggered). The overlay is also refreshed right after a local
attach or release, and when the controller nudges the agent (``HostAgent.refresh_overlay``) because
ports of an overlay network came or went on another host. Failures are logged and retried by the next
reconcile: an instance's local networking never waits on the overlay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from atoll.agent.net import hostscan, netns
from atoll.agent.net.fastpath import FastPath
from atoll.agent.net.names import Names
from atoll.agent.net.overlay import OverlayConfig, OverlayPlane
from atoll.model.overlay import DEFAULT_VXLAN_PORT, HostNetworkReport
from atoll.model.ports import ControlPlane

log = logging.getLogger(__name__)


class OverlaySync:
    def __init__(
        self,
        host_id: str,
        control: ControlPlane,
        names: Names,
        *,
        underlay_ip: str = "",
        port: int = DEFAULT_VXLAN_PORT,
        host_netns: Path | None = None,
        on_overlaid: Callable[[set[str]], Awaitable[None]] | None = None,
        fast: FastPath | None = None,
    ) -> None:
        self.host_id = host_id
        self._control = control
        self._names = names
        self._underlay_ip = underlay_ip
        self._host_netns = host_netns
        self._port = port
        self._plane: OverlayPlane | None = None
        self._reported: HostNetworkReport | None = None
        self._on_overlaid = on_overlaid
        self._fast = fast
        """Told, before the devices are made, which networks have peers (``HostNetwork.set_overlaid``)."""

    async def report(self) -> HostNetworkReport:
        """Scan the host and tell the controller, unless nothing changed since the last report."""
        found = await asyncio.to_thread(
            netns.run_in, self._host_netns, lambda: hostscan.scan(self._names.prefix, self._underlay_ip)
        )
        if found != self._reported:
            await self._control.report_host_network(self.host_id, found)
            self._reported = found
        return found

    async def refresh(self) -> None:
        """Converge this host's VXLAN devices to the controller's description. Never raises."""
        try:
            if self._reported is None:
                await self.report()
            networks = await self._control.overlay_networks(self.host_id)
            if self._on_overlaid is not None:
                await self._on_overlaid({n.network_id for n in networks if n.peers})
            await self._overlay_plane().converge(networks)
        except Exception:
            log.exception("could not converge the overlay networks; retrying at the next reconcile")

    async def reconcile(self) -> None:
        try:
            await self.report()
        except Exception:
            log.exception("could not report the host's networks")
        await self.refresh()

    def _overlay_plane(self) -> OverlayPlane:
        """For the underlay address: the configured one, or the one the last scan found."""
        local = self._underlay_ip or (self._reported.underlay_ip if self._reported else "")
        if self._plane is None or self._plane.config.underlay_ip != local:
            self._plane = OverlayPlane(
                OverlayConfig(
                    names=self._names, underlay_ip=local, port=self._port, host_netns=self._host_netns
                ),
                self._fast,
            )
        return self._plane
