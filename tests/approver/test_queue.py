"""AskQueue: round-robin, caps, the per-session budget and the "Nth request" count."""

from __future__ import annotations

from aip.approver.queue import AskQueue
from aip.shared.outcomes import Outcome


def test_round_robin_serves_sessions_in_turn() -> None:
    q: AskQueue[str] = AskQueue(per_minute=600, burst=100)
    for i in range(5):
        assert q.admit("flood", 0.0)[0] is None
        q.push("flood", f"f{i}")
    assert q.admit("quiet", 0.0)[0] is None
    q.push("quiet", "q0")
    order = [q.pop_next() for _ in range(6)]
    assert order[:2] == ["f0", "q0"]  # the quiet session waits for one flood item at most
    assert order[2:] == ["f1", "f2", "f3", "f4"]
    assert q.pop_next() is None


def test_caps_count_items_until_finished() -> None:
    q: AskQueue[int] = AskQueue(max_per_session=2, max_total=3, per_minute=600, burst=100)
    assert q.admit("a", 0)[0] is None
    assert q.admit("a", 0)[0] is None
    assert q.admit("a", 0)[0] is Outcome.QUEUE_FULL
    assert q.admit("b", 0)[0] is None
    assert q.admit("c", 0)[0] is Outcome.QUEUE_FULL  # overall cap
    q.finish("a")
    assert q.pending() == 2
    assert q.admit("c", 0)[0] is None


def test_budget_burst_then_refill_and_ordinal() -> None:
    q: AskQueue[int] = AskQueue(per_minute=12, burst=6)
    ordinals = []
    for _ in range(6):
        refused, ordinal = q.admit("s", 0.0)
        assert refused is None
        ordinals.append(ordinal)
        q.finish("s")
    assert ordinals == [1, 2, 3, 4, 5, 6]
    assert q.admit("s", 1.0)[0] is Outcome.ASK_RATE_LIMITED
    assert q.admit("other", 1.0)[0] is None  # budgets are per session
    refused, ordinal = q.admit("s", 5.0)  # 12/min = one token every 5 s
    assert refused is None
    assert ordinal == 7
    refused, ordinal = q.admit("s", 64.0)  # the 60 s window has moved past t=0
    assert (refused, ordinal) == (None, 2)


def test_unqueue_and_forget() -> None:
    q: AskQueue[str] = AskQueue()
    q.admit("a", 0)
    q.push("a", "x")
    q.admit("b", 0)
    q.push("b", "y")
    assert q.unqueue("a", "x") is True
    assert q.unqueue("a", "x") is False
    assert q.waiting() == 1
    q.forget("b")
    assert q.pop_next() is None
