"""The approver's wait line: FIFO per proxy session, round-robin across sessions (DESIGN §7).

Pure data structure, no I/O and no clock of its own (callers pass ``now``, monotonic seconds).
It keeps the caps (per session and overall, counting the ask on screen too), the per-session
ask budget against approval fatigue, and the "Nth request in 60 s" count the dialog shows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from aip.shared.outcomes import Outcome

MAX_PENDING_SESSION: Final = 8
MAX_PENDING: Final = 256
BUDGET_PER_MINUTE: Final = 12.0  # asks a session may raise per minute ...
BUDGET_BURST: Final = 6.0  # ... with at most this many in a burst
RECENT_WINDOW_S: Final = 60.0

T = TypeVar("T")


@dataclass(slots=True)
class _Budget:
    tokens: float
    stamp: float
    recent: deque[float] = field(default_factory=deque)  # admission times, last 60 s


class AskQueue(Generic[T]):
    """Waiting items per session; ``pop_next`` serves sessions in turn so a flood from one
    session delays another by at most one item per round."""

    def __init__(
        self,
        *,
        max_per_session: int = MAX_PENDING_SESSION,
        max_total: int = MAX_PENDING,
        per_minute: float = BUDGET_PER_MINUTE,
        burst: float = BUDGET_BURST,
    ) -> None:
        self._max_session = max_per_session
        self._max_total = max_total
        self._rate_per_s = per_minute / 60.0
        self._burst = burst
        self._waiting: dict[str, deque[T]] = {}
        self._turns: deque[str] = deque()  # sessions with waiting items, next first
        self._pending: dict[str, int] = {}  # admitted and not finished (waiting or on screen)
        self._total = 0
        self._budgets: dict[str, _Budget] = {}

    def admit(self, session: str, now: float) -> tuple[Outcome | None, int]:
        """Reserve a place for a new ask: (None, ordinal) when admitted, where ordinal is
        how many asks this session raised in the last 60 s including this one; else
        (QUEUE_FULL or ASK_RATE_LIMITED, 0). Nothing is reserved on a refusal."""
        if self._pending.get(session, 0) >= self._max_session or self._total >= self._max_total:
            return Outcome.QUEUE_FULL, 0
        budget = self._budgets.get(session)
        if budget is None:
            budget = self._budgets[session] = _Budget(self._burst, now)
        budget.tokens = min(self._burst, budget.tokens + (now - budget.stamp) * self._rate_per_s)
        budget.stamp = now
        if budget.tokens < 1.0:
            return Outcome.ASK_RATE_LIMITED, 0
        budget.tokens -= 1.0
        while budget.recent and budget.recent[0] <= now - RECENT_WINDOW_S:
            budget.recent.popleft()
        budget.recent.append(now)
        self._pending[session] = self._pending.get(session, 0) + 1
        self._total += 1
        return None, len(budget.recent)

    def push(self, session: str, item: T) -> None:
        """Queue an admitted item at the end of its session's line."""
        line = self._waiting.get(session)
        if line is None:
            line = self._waiting[session] = deque()
        if not line:
            self._turns.append(session)
        line.append(item)

    def pop_next(self) -> T | None:
        """The next item to show: the head of the session whose turn it is."""
        if not self._turns:
            return None
        session = self._turns.popleft()
        line = self._waiting[session]
        item = line.popleft()
        if line:
            self._turns.append(session)
        return item

    def unqueue(self, session: str, item: T) -> bool:
        """Take a waiting item out of line (deadline, cancel); False if it was not waiting."""
        line = self._waiting.get(session)
        if not line or item not in line:
            return False
        line.remove(item)
        if not line:
            self._turns.remove(session)
        return True

    def finish(self, session: str) -> None:
        """An admitted item is done (answered, expired or cancelled): free its place."""
        count = self._pending.get(session, 0)
        if count <= 0:
            return
        self._total -= 1
        if count == 1:
            del self._pending[session]
        else:
            self._pending[session] = count - 1

    def forget(self, session: str) -> None:
        """The session is gone: drop its budget (its items are finished by the caller)."""
        self._budgets.pop(session, None)
        self._waiting.pop(session, None)
        if session in self._turns:
            self._turns.remove(session)

    def waiting(self, session: str | None = None) -> int:
        if session is not None:
            return len(self._waiting.get(session, ()))
        return sum(len(line) for line in self._waiting.values())

    def pending(self, session: str | None = None) -> int:
        return self._total if session is None else self._pending.get(session, 0)

    def items(self) -> Iterator[T]:
        for line in self._waiting.values():
            yield from line
