"""``proxy_batch.build``'s run path (a message that continues one session's rseqs in order
needs no lookup per pair) takes, skips and marks exactly what the lookup for every pair does.

The reference is the same ``build`` with ``SeenPairs.unseen_from`` answering False, so no run
ever starts: every pair is looked up in ``taken`` and ``seen`` as before the run path.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aip.approver.audit import proxy_batch
from aip.approver.audit.dedup import SeenPairs

SESSIONS = ("0123456789abcdef", "fedcba9876543210")


class NoRuns(SeenPairs):
    def unseen_from(self, session: str, rseq: int) -> bool:
        return False


def _record(session: str, rseq: int) -> dict[str, Any]:
    return {"event": "decision", "session": session, "rseq": rseq, "tool": "t", "user": "u"}


def _seen(cls: type[SeenPairs], written: list[tuple[int, int]]) -> SeenPairs:
    seen = cls()
    for which, rseq in written:
        seen.add(SESSIONS[which], rseq)
    return seen


def _mark(seen: SeenPairs, batch: proxy_batch.Batch) -> None:
    """What the writer does once the batch is written."""
    if batch.run is not None:
        seen.add_run(*batch.run)
    else:
        for session, rseq in batch.pairs:
            seen.add(session, rseq)


def _state(seen: SeenPairs) -> tuple[dict[str, int], dict[str, set[int]]]:
    return dict(seen._floor), copy.deepcopy(seen._above)


pairs = st.tuples(st.integers(0, 1), st.integers(0, 12))


@settings(max_examples=400, deadline=None)
@given(
    written=st.lists(pairs, max_size=12),
    sent=st.lists(pairs, min_size=1, max_size=20),
    in_order=st.booleans(),
    start=st.integers(1, 9),
    room=st.integers(0, 4000),
)
def test_the_run_path_takes_skips_and_marks_what_the_lookups_do(
    written: list[tuple[int, int]],
    sent: list[tuple[int, int]],
    in_order: bool,
    start: int,
    room: int,
) -> None:
    if in_order:  # the common message: the next rseqs of one session (then perhaps more)
        sent = [(0, start + i) for i in range(len(sent) // 2)] + sent[len(sent) // 2 :]
    records = [_record(SESSIONS[which], rseq) for which, rseq in sent]
    fast, slow = _seen(SeenPairs, written), _seen(NoRuns, written)
    args: dict[str, Any] = {"seq": 5, "prev": "0" * 64, "user": "u", "key": None, "room": room}
    got = proxy_batch.build(records, 0, seen=fast, **args)
    want = proxy_batch.build(records, 0, seen=slow, **args)
    assert want.run is None
    assert (got.lines, got.pairs, got.duplicates, got.stop, got.size, got.last_hash) == (
        want.lines, want.pairs, want.duplicates, want.stop, want.size, want.last_hash,
    )  # fmt: skip
    if got.run is not None:
        session, first, last = got.run
        assert got.pairs == [(session, r) for r in range(first, last + 1)]
    _mark(fast, got)
    _mark(slow, want)
    assert _state(fast) == _state(slow)


def test_a_message_of_the_next_rseqs_is_one_run() -> None:
    seen = _seen(SeenPairs, [(0, r) for r in range(1, 6)])
    records = [_record(SESSIONS[0], r) for r in range(6, 70)]
    batch = proxy_batch.build(
        records, 0, seq=0, prev="0" * 64, user="u", key=None, seen=seen, room=1 << 20
    )
    assert batch.run == (SESSIONS[0], 6, 69)
    assert batch.duplicates == 0
    _mark(seen, batch)
    assert _state(seen) == ({SESSIONS[0]: 69}, {})


def test_a_run_that_breaks_still_finds_a_duplicate_taken_earlier() -> None:
    records = [_record(SESSIONS[0], r) for r in (1, 2, 3, 9, 2)]
    batch = proxy_batch.build(
        records, 0, seq=0, prev="0" * 64, user="u", key=None, seen=SeenPairs(), room=1 << 20
    )
    assert batch.run is None
    assert batch.duplicates == 1
    assert [r for _, r in batch.pairs] == [1, 2, 3, 9]
