"""A set of record sequence numbers kept as ranges: the spool's unacknowledged rseqs.

Without an approver every decision stays unacknowledged; a Python ``set`` of ints costs about
70 bytes each, so a proxy grew ~75 bytes per call (43 MB after 100,000 calls). rseqs are
handed out in order, so the unacknowledged ones are a few runs: kept as sorted, disjoint
``[start, stop)`` ranges they cost a few bytes per run, whatever the count.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator


class RseqSet:
    """``add``, ``discard``, ``in``, ``len`` and truth of a set of ints, stored as ranges."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._stops: list[int] = []  # exclusive; _stops[i] < _starts[i + 1] (never touching)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        """The values in rising order."""
        for start, stop in zip(self._starts, self._stops, strict=True):
            yield from range(start, stop)

    def copy(self) -> RseqSet:
        twin = RseqSet()
        twin._starts, twin._stops, twin._count = list(self._starts), list(self._stops), self._count
        return twin

    def __bool__(self) -> bool:
        return self._count > 0

    def __contains__(self, value: object) -> bool:
        if type(value) is not int:
            return False
        i = bisect.bisect_right(self._starts, value) - 1
        return i >= 0 and value < self._stops[i]

    def update(self, values: Iterable[int]) -> None:
        for value in values:
            self.add(value)

    def add(self, value: int) -> None:
        starts, stops = self._starts, self._stops
        if starts and value == stops[-1]:  # the common case: the next rseq
            stops[-1] += 1
            self._count += 1
            return
        if value in self:
            return
        i = bisect.bisect_right(starts, value)  # ranges before i start at or below value
        joins_left = i > 0 and stops[i - 1] == value
        joins_right = i < len(starts) and starts[i] == value + 1
        if joins_left and joins_right:
            stops[i - 1] = stops[i]
            del starts[i], stops[i]
        elif joins_left:
            stops[i - 1] = value + 1
        elif joins_right:
            starts[i] = value
        else:
            starts.insert(i, value)
            stops.insert(i, value + 1)
        self._count += 1

    def discard(self, value: int) -> None:
        if value not in self:
            return
        i = bisect.bisect_right(self._starts, value) - 1
        start, stop = self._starts[i], self._stops[i]
        if start == value and stop == value + 1:
            del self._starts[i], self._stops[i]
        elif start == value:
            self._starts[i] = value + 1
        elif stop == value + 1:
            self._stops[i] = value
        else:  # split the run in two
            self._stops[i] = value
            self._starts.insert(i + 1, value + 1)
            self._stops.insert(i + 1, stop)
        self._count -= 1

    def discard_run(self, start: int, stop: int) -> bool:
        """Discard ``start..stop-1`` at once when every one of them is in the set (within one
        run: the approver's ack of a batch, in order); False, and nothing changed, otherwise."""
        if stop <= start:
            return False
        i = bisect.bisect_right(self._starts, start) - 1
        if i < 0 or stop > self._stops[i]:
            return False
        run_start, run_stop = self._starts[i], self._stops[i]
        if run_start == start and run_stop == stop:
            del self._starts[i], self._stops[i]
        elif run_start == start:
            self._starts[i] = stop
        elif run_stop == stop:
            self._stops[i] = start
        else:  # split the run in two
            self._stops[i] = start
            self._starts.insert(i + 1, stop)
            self._stops.insert(i + 1, run_stop)
        self._count -= stop - start
        return True

    def ranges(self) -> int:
        """How many runs are kept (the memory the set costs)."""
        return len(self._starts)
