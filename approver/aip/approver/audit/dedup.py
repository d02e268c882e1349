"""Which proxy records are already in the log: ``(session, rseq)`` pairs, bounded in memory.

Per session we keep the highest rseq below which every record is written plus the few written
above it (proxies send in order, so that set stays tiny). Rebuilt from the log's tail at start.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import orjson

MAX_SESSIONS = 4096  # least recently written sessions are forgotten first


class SeenPairs:
    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self._max = max_sessions
        self._floor: OrderedDict[str, int] = OrderedDict()  # every rseq <= floor is written
        self._above: dict[str, set[int]] = {}

    def __contains__(self, pair: tuple[str, int]) -> bool:
        session, rseq = pair
        if rseq <= self._floor.get(session, 0):
            return True
        return rseq in self._above.get(session, ())

    def unseen_from(self, session: str, rseq: int) -> bool:
        """Is every pair of ``session`` from ``rseq`` up unseen? (Nothing above its floor.)"""
        return rseq > self._floor.get(session, 0) and session not in self._above

    def add_run(self, session: str, first: int, last: int) -> None:
        """``add`` of ``first`` .. ``last``, at once when they continue the floor."""
        if self._floor.get(session) == first - 1 and session not in self._above:
            self._floor[session] = last
            self._floor.move_to_end(session)
            return
        for rseq in range(first, last + 1):
            self.add(session, rseq)

    def add(self, session: str, rseq: int) -> None:
        known = self._floor.get(session)
        if known is not None and rseq == known + 1 and session not in self._above:
            self._floor[session] = rseq  # the common, in-order case
            self._floor.move_to_end(session)
            return
        floor = known or 0
        self._floor[session] = floor
        self._floor.move_to_end(session)
        if rseq > floor:
            above = self._above.setdefault(session, set())
            above.add(rseq)
            while floor + 1 in above:  # advance the floor over a contiguous run
                floor += 1
                above.discard(floor)
            self._floor[session] = floor
            if not above:
                del self._above[session]
        while len(self._floor) > self._max:
            old, _ = self._floor.popitem(last=False)
            self._above.pop(old, None)

    def assume_written_below(self, session: str, rseq: int) -> None:
        """The tail scan saw ``rseq`` as this session's oldest record in the window but the
        window did not reach the session's start: what it sent before is written."""
        if rseq - 1 > self._floor.get(session, 0):
            self._floor[session] = rseq - 1
            above = self._above.get(session)
            if above:
                above.difference_update(range(0, rseq))


def rebuild(lines_newest_first: Iterable[bytes], *, window_complete: bool) -> SeenPairs:
    """Seen pairs from the tail of the log. ``window_complete``: the lines are the whole
    history (the current file had no predecessor we skipped)."""
    seen = SeenPairs()
    oldest: dict[str, int] = {}
    for line in lines_newest_first:
        try:
            rec: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(rec, dict):
            continue
        session, rseq = rec.get("session"), rec.get("rseq")
        if isinstance(session, str) and isinstance(rseq, int):
            seen.add(session, rseq)
            oldest[session] = min(rseq, oldest.get(session, rseq))
    if not window_complete:
        for session, rseq in oldest.items():
            seen.assume_written_below(session, rseq)
    return seen
