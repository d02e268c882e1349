"""RseqSet behaves as a set of ints (hypothesis, against ``set``) and stays small in order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aip.shared.audit.rseqs import RseqSet

OPS = st.lists(st.tuples(st.sampled_from(["add", "discard"]), st.integers(0, 60)), max_size=200)
RUNS = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 8)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(ops=OPS)
def test_behaves_like_a_set(ops: list[tuple[str, int]]) -> None:
    ours, model = RseqSet(), set()
    for op, value in ops:
        getattr(ours, op)(value)
        getattr(model, op)(value)
        assert len(ours) == len(model)
        assert bool(ours) == bool(model)
    assert [v for v in range(-1, 62) if v in ours] == sorted(model)
    assert "1" not in ours
    assert list(ours) == sorted(model)  # iteration: rising order
    twin = ours.copy()
    twin.add(1000)
    assert list(ours) == sorted(model)  # a copy is its own
    assert list(twin) == [*sorted(model), 1000]


def test_in_order_rseqs_cost_one_range_however_many() -> None:
    unacked = RseqSet()
    unacked.update(range(1, 100_001))
    assert len(unacked) == 100_000
    assert unacked.ranges() == 1
    for rseq in range(1, 50_001):  # acknowledged in order, as the approver does
        unacked.discard(rseq)
    assert unacked.ranges() == 1
    assert 50_000 not in unacked
    assert 50_001 in unacked


@settings(max_examples=300, deadline=None)
@given(ops=OPS, runs=RUNS)
def test_discard_run_is_discarding_each_when_all_are_in(
    ops: list[tuple[str, int]], runs: list[tuple[int, int]]
) -> None:
    """discard_run(a, b) = discarding a..b-1 one by one when all are in; else no change."""
    ours, model = RseqSet(), set()
    for op, value in ops:
        getattr(ours, op)(value)
        getattr(model, op)(value)
    for start, length in runs:
        run = set(range(start, start + length))
        done = ours.discard_run(start, start + length)
        assert done == (bool(run) and run <= model)
        if done:
            model -= run
        assert len(ours) == len(model)
        assert [v for v in range(-1, 70) if v in ours] == sorted(model)
