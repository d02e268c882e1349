"""``proxy_batch.build``'s whole-message path (``_whole_run``: every condition checked in one
pass over the message, then only the splice and the hash per record) builds exactly what the
general path builds: the same lines, pairs, run, duplicates, stop, size and last hash, for
any message, and leaves the same pairs seen (issue 16).

The reference is the same ``build`` with ``_whole_run`` answering None, so the general path
decides every message, as it did before the whole-message path existed.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.approver.audit import proxy_batch
from aip.approver.audit.dedup import SeenPairs
from aip.shared.audit.record import CAP_CHARS

SESSIONS = ("0123456789abcdef", "fedcba9876543210")
PREV = "ab" * 32
KEY = b"k" * 32

TEXT = st.sampled_from(["", "x", "caf\u00e9", "\u202e", "\x7f", "\x00", "\U0001f600", "a\\b"])
VALUE = st.none() | st.booleans() | st.integers(-5, 5) | TEXT | st.text(max_size=8)


@st.composite
def messages(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Half of them what a proxy sends (one session's next rseqs, user set, printable ASCII),
    the rest with any of the things that must send a message down the general path."""
    count = draw(st.integers(1, 12))
    first = draw(st.integers(0, 9))
    odd = draw(st.booleans())  # else the message is clean: the whole-message path's
    records = []
    for i in range(count):
        record: dict[str, Any] = {"event": "decision", "user": "alice", "tool": "t"}
        record["arguments"] = {"path": draw(st.text("abc/", max_size=6))}
        record["session"] = SESSIONS[0]
        record["rseq"] = first + i
        if odd and draw(st.integers(0, 3)) == 0:
            record["session"] = SESSIONS[1]
        if odd and draw(st.integers(0, 3)) == 0:
            record["rseq"] = draw(st.sampled_from([first, first + i + 2, True, None, "3", -1]))
        if odd and draw(st.integers(0, 4)) == 0:  # seq, prev, user: ours to say
            record[draw(st.sampled_from(["seq", "prev", "user"]))] = draw(VALUE)
        if odd and draw(st.integers(0, 4)) == 0:  # escapes, long values
            record[draw(st.sampled_from(["text", "tool", "user"]))] = draw(
                TEXT | st.just("A" * (CAP_CHARS - 400)) | st.just("B" * (CAP_CHARS + 50))
            )
        if odd and draw(st.integers(0, 9)) == 0:
            del record[draw(st.sampled_from(["user", "session", "rseq"]))]
        records.append(record)
    return records


def _seen(written: list[tuple[int, int]]) -> SeenPairs:
    seen = SeenPairs()
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


def _general(monkeypatch: pytest.MonkeyPatch, **kw: Any) -> proxy_batch.Batch:
    with monkeypatch.context() as m:
        m.setattr(proxy_batch, "_whole_run", lambda *args: None)
        return proxy_batch.build(**kw)


def _fields(batch: proxy_batch.Batch) -> tuple[Any, ...]:
    return (batch.lines, batch.pairs, batch.last_hash, batch.size, batch.duplicates,
            batch.stop, batch.run)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(
    records=messages(),
    written=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 12)), max_size=6)
    | st.builds(lambda n: [(0, r) for r in range(1, n)], st.integers(0, 10)),
    start=st.sampled_from([0, 0, 0, 1, 3]),
    room=st.sampled_from([0, 300, 1000, 2000, *[1 << 30] * 4]),
    empty=st.booleans(),
    key=st.sampled_from([None, KEY]),
    user=st.sampled_from(["root", ""]),
)
def test_the_whole_message_path_builds_what_the_general_path_builds(
    records: list[dict[str, Any]],
    written: list[tuple[int, int]],
    start: int,
    room: int,
    empty: bool,
    key: bytes | None,
    user: str,
) -> None:
    start = min(start, len(records))
    fast_seen, slow_seen = _seen(written), _seen(written)
    kw: dict[str, Any] = {"seq": 41, "prev": PREV, "user": user, "key": key, "room": room}
    kw["empty"] = empty
    copied = copy.deepcopy(records)
    got = proxy_batch.build(records, start, seen=fast_seen, **kw)
    with pytest.MonkeyPatch.context() as monkeypatch:
        want = _general(monkeypatch, records=copied, start=start, seen=slow_seen, **kw)
    assert _fields(got) == _fields(want)
    assert records == copied  # neither path changes a record
    _mark(fast_seen, got)
    _mark(slow_seen, want)
    assert (fast_seen._floor, fast_seen._above) == (slow_seen._floor, slow_seen._above)


def _proxy_message(first: int, count: int = 64) -> list[dict[str, Any]]:
    return [
        {"event": "decision", "user": "alice", "tool": "read_file", "arguments": {"p": "/x"},
         "session": SESSIONS[0], "rseq": first + i, "mode": "enforce"}
        for i in range(count)
    ]  # fmt: skip


def test_a_proxy_message_takes_the_whole_message_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common message is the one the fast path exists for (else the property above
    would only ever compare the general path with itself); its lines chain as the log's."""
    records = _proxy_message(5)
    kw: dict[str, Any] = {"seq": 3, "prev": PREV, "user": "root", "key": KEY, "room": 1 << 20}
    whole = proxy_batch._whole_run(
        records, 0, 3, PREV, KEY, _seen([(0, r) for r in range(1, 5)]), 1 << 20
    )
    assert whole is not None
    assert whole.run == (SESSIONS[0], 5, 68)
    want = _general(
        monkeypatch, records=records, start=0, seen=_seen([(0, r) for r in range(1, 5)]), **kw
    )
    assert _fields(whole) == _fields(want)
    prev = PREV
    for seq, line in enumerate(whole.lines, 4):
        parsed = orjson.loads(line)
        assert (parsed["seq"], parsed["prev"]) == (seq, prev)
        prev = proxy_batch.sha256(line).hexdigest()
    assert whole.last_hash == prev


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda rs: rs[3].update(rseq=2), "a duplicate inside the message"),
        (lambda rs: rs[3].update(rseq=99), "out of order"),
        (lambda rs: rs[3].update(rseq=True), "a bool rseq"),
        (lambda rs: rs[3].update(session=SESSIONS[1]), "two sessions"),
        (lambda rs: rs[3].update(seq=1), "a seq of its own"),
        (lambda rs: rs[3].update(prev="x"), "a prev of its own"),
        (lambda rs: rs[3].update(user=None), "a user to fill in"),
        (lambda rs: rs[3].update(tool="caf\u00e9"), "a character to escape"),
        (lambda rs: rs[3].update(tool="\x7f"), "DEL to escape"),
        (lambda rs: rs[3].update(tool="A" * CAP_CHARS), "a value to cap"),
    ],
)
def test_what_sends_a_message_down_the_general_path(change: Any, why: str) -> None:
    records = _proxy_message(1, 8)
    change(records)
    assert proxy_batch._whole_run(records, 0, 0, PREV, KEY, SeenPairs(), 1 << 20) is None, why


def test_seen_rotation_and_room_send_it_down_the_general_path() -> None:
    records = _proxy_message(1, 8)
    assert proxy_batch._whole_run(records, 0, 0, PREV, KEY, _seen([(0, 3)]), 1 << 20) is None
    size = proxy_batch._whole_run(records, 0, 0, PREV, KEY, SeenPairs(), 1 << 20)
    assert size is not None
    assert proxy_batch._whole_run(records, 0, 0, PREV, KEY, SeenPairs(), size.size) is not None
    assert proxy_batch._whole_run(records, 0, 0, PREV, KEY, SeenPairs(), size.size - 1) is None
