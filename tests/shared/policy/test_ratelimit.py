"""Per-rule token buckets: burst N, refill N per period, give-back for denied asks."""

from __future__ import annotations

import threading

import pytest

from aip.shared.policy.model import Action, RateLimit, ToolRule
from aip.shared.policy.ratelimit import RateLimiter


def rule(index: int, limit: RateLimit | None) -> ToolRule:
    return ToolRule(index, "t", "t", Action.ALLOW, (), None, limit, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_rule_without_limit_always_passes(clock: Clock) -> None:
    limiter = RateLimiter(clock)
    r = rule(0, None)
    assert all(limiter.take(r) for _ in range(1000))
    limiter.give_back(r)
    assert limiter.available(r) == float("inf")


def test_burst_then_refill(clock: Clock) -> None:
    limiter = RateLimiter(clock)
    r = rule(0, RateLimit(3, 60.0, "3/minute"))
    assert [limiter.take(r) for _ in range(4)] == [True, True, True, False]
    clock.now += 19.9  # 3 per minute = one every 20 s
    assert not limiter.take(r)
    clock.now += 0.1
    assert limiter.take(r)
    assert not limiter.take(r)
    clock.now += 3600  # never more than the burst
    assert limiter.available(r) == 3.0


def test_buckets_are_per_rule(clock: Clock) -> None:
    limiter = RateLimiter(clock)
    a, b = rule(0, RateLimit(1, 1.0, "1/s")), rule(1, RateLimit(1, 1.0, "1/s"))
    assert limiter.take(a)
    assert not limiter.take(a)
    assert limiter.take(b)


def test_give_back_is_capped_at_the_burst(clock: Clock) -> None:
    limiter = RateLimiter(clock)
    r = rule(0, RateLimit(2, 1.0, "2/s"))
    assert limiter.take(r)
    assert limiter.take(r)
    assert not limiter.take(r)
    limiter.give_back(r)
    assert limiter.take(r)
    limiter.give_back(r)
    limiter.give_back(r)
    limiter.give_back(r)
    assert limiter.available(r) == 2.0


def test_a_clock_going_backwards_adds_nothing(clock: Clock) -> None:
    limiter = RateLimiter(clock)
    r = rule(0, RateLimit(1, 1.0, "1/s"))
    assert limiter.take(r)
    clock.now -= 50
    assert not limiter.take(r)


def test_concurrent_takes_never_exceed_the_burst(clock: Clock) -> None:
    limiter = RateLimiter(clock)
    r = rule(0, RateLimit(100, 3600.0, "100/hour"))
    granted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [limiter.take(r) for _ in range(50)]
        with lock:
            granted.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sum(granted) == 100
    assert len(granted) == 400
