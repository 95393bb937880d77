"""Telling hosts that security changed (a rule, a port's groups, a group's members), so they apply it at
once instead of at their next reconcile. A host that cannot be told now catches up when it reconciles."""

from __future__ import annotations

import asyncio
import logging

from atoll.services.context import Controller

log = logging.getLogger(__name__)


async def security_changed(ctl: Controller, *, except_host: str = "") -> None:
    """``except_host``: a host that has just fetched the current policy itself (the host of a new
    instance, whose agent loads the policy with the instance's veths) and needs no nudge."""
    agents = [a for a in ctl.agents.all() if a.host_id != except_host]
    results = await asyncio.gather(*(a.refresh_security() for a in agents), return_exceptions=True)
    for agent, result in zip(agents, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("host %s could not apply security changes now: %s", agent.host_id, result)
