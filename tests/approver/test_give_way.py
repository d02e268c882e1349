"""The approver offers its CPU while it works through a proxy's audit records (issue 16: on a
CPU shared with the proxies, a burst held every call in flight). ``give_way`` offers it
(``sched_yield``) at most once per GIVE_WAY_S; the audit path calls it inside a message, on
both of ``proxy_batch.build``'s paths, and the lines built are the same with or without."""

from __future__ import annotations

from typing import Any

import pytest

from aip.approver import give_way as gw
from aip.approver.audit import proxy_batch
from aip.approver.audit.dedup import SeenPairs


class Clock:
    """A clock that moves ``step`` seconds at every reading."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 100.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture
def offers(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    made: list[float] = []
    clock = Clock(0.0)
    monkeypatch.setattr(gw, "_clock", clock)
    monkeypatch.setattr(gw, "_sched_yield", lambda: made.append(clock.now))
    monkeypatch.setattr(gw, "_last", 0.0)
    return made


def test_offers_the_cpu_at_most_once_per_interval(offers: list[float]) -> None:
    clock = gw._clock
    assert isinstance(clock, Clock)
    gw.give_way()  # long after the last offer
    assert len(offers) == 1
    clock.step = gw.GIVE_WAY_S * 0.51  # each reading: half the interval and a bit
    gw.give_way()
    assert len(offers) == 1
    gw.give_way()
    assert len(offers) == 2
    for _ in range(20):
        gw.give_way()
    assert len(offers) == 12  # every second call


def _records(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"event": "decision", "user": "alice", "session": "0123456789abcdef", "rseq": i, **extra}
        for i in range(1, count + 1)
    ]


@pytest.mark.parametrize("odd", [{}, {"prev": "theirs"}], ids=["whole-message", "general"])
def test_a_message_offers_the_cpu_inside_and_builds_the_same_lines(
    offers: list[float], odd: dict[str, Any]
) -> None:
    def build() -> proxy_batch.Batch:
        return proxy_batch.build(
            _records(64, **odd), 0, seq=7, prev="ab" * 32, user="alice", key=None,
            seen=SeenPairs(), room=1 << 20,
        )  # fmt: skip

    clock = gw._clock
    assert isinstance(clock, Clock)
    clock.step = 0.0
    gw._last = clock.now  # just offered
    quiet = build()
    assert offers == []  # the clock stood: no offer
    clock.step = gw.GIVE_WAY_S / 4  # each reading a quarter of the interval
    busy = build()
    assert len(offers) >= 16  # one per few records, inside the one message
    assert busy.lines == quiet.lines
    assert (busy.last_hash, busy.stop, busy.size) == (quiet.last_hash, quiet.stop, quiet.size)
