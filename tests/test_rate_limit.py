"""The rate limiter on an explicit clock: exact at window boundaries, budget back once
the window has passed, never stricter than the limit (property-based)."""

from __future__ import annotations

import bisect

from hopper.server.rate_limit import RateLimiter
from hypothesis import given
from hypothesis import strategies as st

WINDOW_MS = 10_000


def limiter(max_requests: int) -> RateLimiter:
    return RateLimiter(WINDOW_MS, max_requests, cleanup_ms=60_000)


def test_a_full_budget_just_before_a_boundary_gets_nothing_just_after() -> None:
    """The approximate counter let a sixth request through here (the previous window's
    five, weighted by an overlap just under 1, counted as 4.99…)."""
    rl = limiter(5)
    for i in range(5):
        assert rl.allow("c", 9_995 + i)
    assert not rl.allow("c", 10_001)
    assert not rl.allow("c", 19_994)
    assert rl.allow("c", 19_995)


def test_the_budget_comes_back_as_the_window_slides() -> None:
    rl = limiter(2)
    assert rl.allow("c", 100_000)
    assert rl.allow("c", 105_000)
    assert not rl.allow("c", 109_999)
    assert rl.allow("c", 110_000)  # the request at 100 000 left the window (100 000, 110 000]
    assert not rl.allow("c", 114_999)
    assert rl.allow("c", 115_000)


def test_clients_have_their_own_budgets_and_idle_ones_are_forgotten() -> None:
    rl = RateLimiter(WINDOW_MS, 1, cleanup_ms=1_000)
    assert rl.allow("a", 0)
    assert rl.allow("b", 500)
    assert not rl.allow("a", 600)
    assert len(rl) == 2
    assert rl.allow("c", 20_000)  # cleanup runs: a and b have nothing left in the window
    assert len(rl) == 1


@given(
    max_requests=st.integers(1, 8),
    gaps=st.lists(st.integers(0, 4_000), min_size=1, max_size=200),
)
def test_never_more_than_the_limit_in_any_window_and_never_stricter(
    max_requests: int, gaps: list[int]
) -> None:
    rl = limiter(max_requests)
    now_ms = 0
    admitted: list[int] = []
    for gap in gaps:
        now_ms += gap
        in_window = len(admitted) - bisect.bisect_right(admitted, now_ms - WINDOW_MS)
        allowed = rl.allow("c", now_ms)
        # Exactly the sliding-log rule: admitted iff fewer than the limit in (now-W, now].
        assert allowed == (in_window < max_requests), (now_ms, in_window)
        if allowed:
            admitted.append(now_ms)
    for i, start in enumerate(admitted):
        inside = bisect.bisect_left(admitted, start + WINDOW_MS) - i
        assert inside <= max_requests, (start, inside)
