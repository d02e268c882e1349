"""A proxy's ``audit`` message as chained log lines, built before anything is written.

The writer (aip.approver.audit.writer) appends the lines with one ``write()`` and only then
takes their seq, hash and (session, rseq) pairs as its own: all of the batch or none of it is
in the log, so a failed write leaves nothing to ack and nothing marked seen (the proxy sends
the batch again). Each line is byte for byte what a one-record ``write()`` made: user, the
``seq``/``prev`` splice, capping (tests/approver/audit/test_audit_ingest_equal.py).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from hashlib import sha256
from itertools import repeat
from typing import Any

import orjson

from aip.approver.audit.dedup import SeenPairs
from aip.approver.give_way import give_way
from aip.shared.audit.record import CAP_CHARS, ascii_json, cap_record


def chained_line(record: dict[str, Any], seq: int, prev: str) -> bytes:
    """The record with ``seq`` and ``prev`` appended (spliced in: this is the hot path)."""
    if "seq" in record or "prev" in record:
        record = {k: v for k, v in record.items() if k not in ("seq", "prev")}
    body = orjson.dumps(record)
    tail = b'"seq":%d,"prev":"%s"}' % (seq, prev.encode("ascii"))
    return ascii_json(body[:-1] + (b"," if len(body) > 2 else b"") + tail)


def record_line(
    record: dict[str, Any], seq: int, prev: str, user: str, key: bytes | None
) -> tuple[dict[str, Any], bytes]:
    """(record as written, its line): our user name filled in, capped when the line is long."""
    if "user" in record and not record["user"]:
        record = {**record, "user": user}
    line = chained_line(record, seq, prev)
    if len(line) > CAP_CHARS and key is not None:
        record = cap_record(record, key)  # only a long line can hold a long value
        line = chained_line(record, seq, prev)
    return record, line


@dataclass(slots=True)
class Batch:
    """Lines to append after ``seq``/``prev``; ``stop``: the index of the first record not
    taken (it needs a rotation first, or the records ended)."""

    lines: list[bytes] = field(default_factory=list)
    pairs: list[tuple[str, int]] = field(default_factory=list)  # to mark seen once written
    last_hash: str = ""
    size: int = 0  # bytes, newlines included
    duplicates: int = 0
    stop: int = 0
    run: tuple[str, int, int] | None = None  # pairs are exactly (session, first..last)


def build(
    records: list[dict[str, Any]],
    start: int,
    *,
    seq: int,
    prev: str,
    user: str,
    key: bytes | None,
    seen: SeenPairs,
    room: int,
    empty: bool = False,
) -> Batch:
    """Lines for ``records[start:]`` until one would not fit in the ``room`` left in the file
    (an ``empty`` file takes a first line of any size, as the one-record path does), skipping
    pairs already in the log or earlier in this batch.

    A proxy's message is nearly always one session's next rseqs in order: once its first
    pair is unseen with nothing seen above it (``SeenPairs.unseen_from``), each following
    pair that continues the run is unseen too and needs no lookup. The first pair that does
    not continue it ends the run for good: the pairs taken so far join ``taken`` and every
    later pair is looked up as before."""
    whole = _whole_run(records, start, seq, prev, key, seen, room)
    if whole is not None:
        return whole
    batch = Batch(last_hash=prev)
    taken: set[tuple[str, int]] = set()
    lines, pairs = batch.lines, batch.pairs
    size, last = 0, prev
    run_session: str | None = None  # the run's session while it lasts
    run_next = 0  # the rseq that continues it
    fresh = True  # no pair looked at yet, or only duplicates: a run may still start
    for index in range(start, len(records)):  # the general path: any record, any message
        give_way()
        record = records[index]
        session, rseq = record.get("session"), record.get("rseq")
        pair = (session, rseq) if isinstance(session, str) and isinstance(rseq, int) else None
        if pair is None:
            pass
        elif run_session is not None and session == run_session and rseq == run_next:
            run_next += 1
        else:
            if run_session is not None:  # the run ends here: look up from now on
                taken.update(pairs)
                run_session = None
            if pair in taken or pair in seen:
                batch.duplicates += 1
                continue
            if fresh and seen.unseen_from(*pair):
                run_session, run_next = pair[0], pair[1] + 1
            fresh = False
        seq += 1
        if "seq" in record or "prev" in record or ("user" in record and not record["user"]):
            record, line = record_line(record, seq, last, user, key)
        else:  # the common case, inlined: what chained_line and record_line do for it
            body = orjson.dumps(record)
            tail = b'"seq":%d,"prev":"%s"}' % (seq, last.encode("ascii"))
            line = ascii_json(body[:-1] + (b"," if len(body) > 2 else b"") + tail)
            if len(line) > CAP_CHARS and key is not None:
                record, line = record_line(record, seq, last, user, key)
        if size + len(line) + 1 > room and (size > 0 or not empty):
            batch.stop, batch.size, batch.last_hash = index, size, last
            _note_run(batch, run_session)
            return batch
        lines.append(line)
        size += len(line) + 1
        last = sha256(line).hexdigest()  # = chain.line_hash
        if pair is not None:
            pairs.append(pair)
            if run_session is None:
                taken.add(pair)
    batch.stop, batch.size, batch.last_hash = len(records), size, last
    _note_run(batch, run_session)
    return batch


def _note_run(batch: Batch, run_session: str | None) -> None:
    """A run that lasted to the end covers every pair taken: the writer marks it at once."""
    if run_session is not None and batch.pairs:
        batch.run = (run_session, batch.pairs[0][1], batch.pairs[-1][1])


def _whole_run(
    records: list[dict[str, Any]],
    start: int,
    seq: int,
    prev: str,
    key: bytes | None,
    seen: SeenPairs,
    room: int,
) -> Batch | None:
    """``build`` of a whole message that is one run (one session's next rseqs, none seen),
    whose records need neither ``user`` filled in, ``seq``/``prev`` taken out, characters
    escaped nor capping, and that fits in ``room``: nearly every message. None: any doubt,
    and the general path decides. Each condition is one pass in C over the message
    (``map``): per record only the splice and the hash run as Python (issue 16: the
    approver's interpreter time per record was its main cost). The lines are the general
    path's byte for byte (tests/approver/audit/test_proxy_batch_whole.py)."""
    stop = len(records)
    if start:
        records = records[start:]
    count = len(records)
    if not count:
        return None
    sessions: list[Any] = list(map(dict.get, records, repeat("session")))
    rseqs: list[Any] = list(map(dict.get, records, repeat("rseq")))
    session, first = sessions[0], rseqs[0]
    if (
        not isinstance(session, str)
        or sessions.count(session) != count
        or list(map(type, rseqs)).count(int) != count  # not bool: a bool rseq is no run
        or rseqs != list(range(first, first + count))
        or not seen.unseen_from(session, first)
        or any(map(operator.contains, records, repeat("seq")))
        or any(map(operator.contains, records, repeat("prev")))
        or not all(map(dict.get, records, repeat("user"), repeat(True)))  # absent is fine
    ):
        return None
    bodies = list(map(orjson.dumps, records))
    joined = b"".join(bodies)
    if not joined.isascii() or b"\x7f" in joined or min(map(len, bodies)) <= 2:
        return None  # ascii_json would rewrite something, or an empty object
    lines: list[bytes] = []
    last = prev.encode("ascii")
    for body in bodies:
        give_way()
        seq += 1
        line = b'%b,"seq":%d,"prev":"%b"}' % (body[:-1], seq, last)
        lines.append(line)
        last = sha256(line).hexdigest().encode("ascii")
    size = sum(map(len, lines)) + count
    if size > room or (key is not None and max(map(len, lines)) > CAP_CHARS):
        return None  # a rotation or a cap is due: the general path finds where
    pairs = list(zip(sessions, rseqs, strict=True))
    return Batch(lines, pairs, last.decode("ascii"), size, 0, stop, (session, first, rseqs[-1]))
