"""Per-rule token buckets for ``rate_limit`` (DESIGN §4.4 step 6).

One bucket per rule of one policy, keyed by the rule's index: a limiter belongs to one proxy
session and one loaded policy (make a new one on reload). Rate N per period with a burst of N,
like the reference (``golang.org/x/time/rate``). Thread-safe: an ask's token may be given back
from the approval client's thread. The clock is injectable (monotonic seconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from aip.shared.policy.model import RateLimit, ToolRule
from aip.shared.slotclass import Slotted


class _Bucket(Slotted):
    """One rule's token bucket."""

    __slots__ = ("stamp", "tokens")
    tokens: float
    stamp: float  # clock reading when ``tokens`` was last brought up to date

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    """Token buckets for the rules that have a ``rate_limit``; rules without one always pass."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, rule: ToolRule) -> bool:
        """Spend one token of ``rule``'s bucket; False (nothing spent) when it is empty."""
        limit = rule.rate_limit
        if limit is None:
            return True
        with self._lock:
            bucket = self._refill(rule.index, limit)
            if bucket.tokens < 1.0:
                return False
            bucket.tokens -= 1.0
            return True

    def give_back(self, rule: ToolRule) -> None:
        """Return the token an ask reserved when the human (or the approver) said no."""
        limit = rule.rate_limit
        if limit is None:
            return
        with self._lock:
            bucket = self._refill(rule.index, limit)
            bucket.tokens = min(float(limit.count), bucket.tokens + 1.0)

    def available(self, rule: ToolRule) -> float:
        """Tokens currently in ``rule``'s bucket (for status output and tests)."""
        limit = rule.rate_limit
        if limit is None:
            return float("inf")
        with self._lock:
            return self._refill(rule.index, limit).tokens

    def _refill(self, key: int, limit: RateLimit) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(limit.count), now)
            return bucket
        elapsed = now - bucket.stamp
        if elapsed > 0:  # a clock that stands still (or a test clock set back) adds nothing
            rate = limit.count / limit.period_s
            bucket.tokens = min(float(limit.count), bucket.tokens + elapsed * rate)
            bucket.stamp = now
        return bucket
