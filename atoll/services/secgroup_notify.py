"""Telling hosts that security changed (a rule, a port's groups, a group's members), so they apply it at
once instead of at their next reconcile. A host that cannot be told now catches up when it reconciles."""

from __future__ import annotations

import asyncio
import logging

from atoll.services.context import Controller

log = logging.getLogger(__name__)


async def security_changed(ctl: Controller) -> None:
    agents = ctl.agents.all()
    results = await asyncio.gather(*(a.refresh_security() for a in agents), return_exceptions=True)
    for agent, result in zip(agents, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("host %s could not apply security changes now: %s", agent.host_id, result)
