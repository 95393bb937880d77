"""Telling hosts that routers or floating IPs changed, after the change is committed.

Each host then fetches its routers (``ControlPlane.routers``) and converges at once; the reconcile
loop does the same periodically, so a host that was unreachable now catches up later. A host's
failure is logged, not raised: the change is stored, and the host's next reconcile applies it.
"""

from __future__ import annotations

import logging

from atoll.services.context import Controller

log = logging.getLogger(__name__)


async def routing_changed(ctl: Controller) -> None:
    for agent in ctl.agents.all():
        try:
            await agent.routing_changed()
        except Exception:
            log.exception("host %s could not apply the routing change yet; its reconcile will", agent.host_id)
