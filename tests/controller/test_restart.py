from __future__ import annotations

import pytest

from atoll.model.instance import RestartPolicy
from atoll.services.restart import BACKOFF_MAX, next_streak, restart_delay

NO = RestartPolicy("no")
ALWAYS = RestartPolicy("always")
UNLESS = RestartPolicy("unless-stopped")
ON_FAILURE = RestartPolicy("on-failure")
ON_FAILURE_2 = RestartPolicy("on-failure", max_retries=2)


@pytest.mark.parametrize(
    ("policy", "code", "count", "user_stopped", "restarts"),
    [
        (NO, 1, 0, False, False),
        (NO, 0, 0, False, False),
        (ON_FAILURE, 0, 0, False, False),
        (ON_FAILURE, 1, 0, False, True),
        (ON_FAILURE, 1, 100, False, True),
        (ON_FAILURE_2, 1, 0, False, True),
        (ON_FAILURE_2, 1, 1, False, True),
        (ON_FAILURE_2, 1, 2, False, False),
        (ON_FAILURE, 143, 0, True, False),
        (ALWAYS, 0, 0, False, True),
        (ALWAYS, 1, 50, False, True),
        (ALWAYS, 137, 0, True, False),
        (UNLESS, 0, 0, False, True),
        (UNLESS, 0, 0, True, False),
    ],
)
def test_whether(policy: RestartPolicy, code: int, count: int, user_stopped: bool, restarts: bool) -> None:
    assert (restart_delay(policy, code, count, user_stopped, 1.0) is not None) is restarts


def test_backoff_doubles_and_caps() -> None:
    delays = [restart_delay(ALWAYS, 1, n, False, 0.5) for n in range(12)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == BACKOFF_MAX
    assert all(d is not None and d <= BACKOFF_MAX for d in delays)
    assert restart_delay(ALWAYS, 1, 10_000, False, 0.5) == BACKOFF_MAX


def test_long_run_resets_backoff() -> None:
    assert restart_delay(ALWAYS, 1, 7, False, 10.0) == 0.1
    assert restart_delay(ALWAYS, 1, 7, False, 9.9) == pytest.approx(12.8)
    assert restart_delay(ALWAYS, 1, 7, False, 1.0, streak=1) == 0.2
    assert next_streak(5, 12.0) == 1
    assert next_streak(5, 1.0) == 6
