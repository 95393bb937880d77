"""Restart policies, with Docker's semantics and back-off. Pure.

A policy decides *whether* an exited instance comes back:
- ``no``: never;
- ``on-failure``: when the exit code is not 0, up to ``max_retries`` restarts (0 means no limit);
- ``always`` and ``unless-stopped``: always.
An instance that a user stopped or killed never comes back, whatever the policy (Docker's "manually
stopped"); the difference between ``always`` and ``unless-stopped`` only shows when hosts reboot.

The back-off decides *when*: 0.1 s, doubling with every consecutive restart, at most 60 s. A run that lasted
10 s or more resets the back-off, though the restart count keeps growing.
"""

from __future__ import annotations

from atoll.model.instance import RestartPolicy

BACKOFF_BASE = 0.1
BACKOFF_MAX = 60.0
BACKOFF_RESET_AFTER = 10.0
"""A run at least this long counts as healthy: Docker's threshold."""

POLICIES = ("no", "on-failure", "always", "unless-stopped")


def backoff(streak: int) -> float:
    """The delay before the (streak+1)-th consecutive quick restart."""
    return min(BACKOFF_MAX, BACKOFF_BASE * float(2 ** min(max(streak, 0), 16)))


def should_restart(policy: RestartPolicy, exit_code: int, restart_count: int, user_stopped: bool) -> bool:
    if user_stopped or policy.name == "no":
        return False
    if policy.name == "on-failure":
        return exit_code != 0 and (policy.max_retries == 0 or restart_count < policy.max_retries)
    return policy.name in ("always", "unless-stopped")


def restart_delay(
    policy: RestartPolicy,
    exit_code: int,
    restart_count: int,
    user_stopped: bool,
    ran_for: float,
    *,
    streak: int | None = None,
) -> float | None:
    """Seconds to wait before restarting, or None when the instance stays down.

    ``streak`` is the number of consecutive quick restarts so far; it defaults to ``restart_count`` for
    callers that do not track resets.
    """
    if not should_restart(policy, exit_code, restart_count, user_stopped):
        return None
    if ran_for >= BACKOFF_RESET_AFTER:
        return backoff(0)
    return backoff(restart_count if streak is None else streak)


def next_streak(streak: int, ran_for: float) -> int:
    """The streak to store once a restart is scheduled."""
    return 1 if ran_for >= BACKOFF_RESET_AFTER else streak + 1
