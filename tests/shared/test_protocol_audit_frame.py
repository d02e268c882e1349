"""``audit_frame``: the proxy's audit message built around records it already serialized. It
must be byte for byte what ``encode(Audit(...))`` makes of the same records, and the approver
must refuse a bad batch made this way exactly as it refuses one made the other way."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.shared.protocol.codec import ProtocolError, encode
from aip.shared.protocol.frames import decode_to_approver, decode_to_proxy
from aip.shared.protocol.messages import MAX_AUDIT_RECORDS, Audit, AuditAck, audit_frame

S = "0123456789abcdef"

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


def record(rseq: int, **extra: Any) -> dict[str, Any]:
    return {"event": "decision", "session": S, "rseq": rseq, **extra}


@settings(max_examples=200, deadline=None)
@given(
    extras=st.lists(st.dictionaries(st.text(), JSON, max_size=4), min_size=1, max_size=64),
    batch=st.integers(0, 2**53),
)
def test_same_bytes_as_encoding_the_audit_message(extras: list[dict[str, Any]], batch: int) -> None:
    records = [{**extra, **record(i)} for i, extra in enumerate(extras)]
    lines = [orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records]
    frame = audit_frame(S, batch, lines)
    assert frame == encode(Audit(session=S, batch=batch, records=records))
    msg = decode_to_approver(frame)
    assert isinstance(msg, Audit)
    assert (msg.session, msg.batch, msg.records) == (S, batch, records)


BAD_RECORDS = [
    pytest.param(record(1, session="fedcba9876543210"), id="another session"),
    pytest.param({"event": "decision", "session": S}, id="no rseq"),
    pytest.param(record(-1), id="negative rseq"),
    pytest.param(record(1) | {"rseq": "1"}, id="rseq a string"),
    pytest.param(record(1) | {"rseq": True}, id="rseq a boolean"),
]


@pytest.mark.parametrize("bad", BAD_RECORDS)
def test_the_approver_refuses_a_bad_record_as_before(bad: dict[str, Any]) -> None:
    """The same refusal for the frame built from lines as for one encoded the old way (a
    forged record fails the whole batch: nothing of it is written or acked)."""
    records = [record(1), bad]
    raw = b'{"session":"%s","batch":7,"records":%s,"type":"audit","v":1}' % (
        S.encode(),
        orjson.dumps(records),
    )
    with pytest.raises(ProtocolError) as before:
        decode_to_approver(raw)
    frame = audit_frame(S, 7, [orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records])
    assert frame == raw
    with pytest.raises(ProtocolError) as now:
        decode_to_approver(frame)
    assert str(now.value) == str(before.value)


@pytest.mark.parametrize(
    ("session", "batch", "lines"),
    [
        pytest.param("0123", 1, [b'{"rseq":1}\n'], id="bad session"),
        pytest.param(S, 1, [], id="no record"),
        pytest.param(S, 1, [b'{"rseq":1}\n'] * (MAX_AUDIT_RECORDS + 1), id="65 records"),
        pytest.param(S, 1, [b'{"rseq":1}'], id="no newline"),
        pytest.param(S, 1, [b'{"rseq":1}\n', b'{"rseq":2}'], id="the last without newline"),
        pytest.param(S, 1, [b'{"rseq":1}\n{"rseq":2}\n'], id="two records in one line"),
        pytest.param(S, 1, [b'{"rseq":1}\n\n'], id="an empty line after it"),
        pytest.param(S, 1, [b'{"a":1,\n"rseq":1}\n'], id="a newline inside"),
        pytest.param(S, 1, [b"[1]\n"], id="not an object"),
        pytest.param(S, 1, [b"\n"], id="empty"),
        pytest.param(S, True, [b'{"rseq":1}\n'], id="batch a boolean"),
    ],
)
def test_a_batch_that_cannot_be_sent_is_refused_here(
    session: str, batch: Any, lines: list[bytes]
) -> None:
    with pytest.raises(ProtocolError):
        audit_frame(session, batch, lines)


@pytest.mark.parametrize(
    ("rseqs", "error"),
    [
        pytest.param([1, 2, True], "AuditAck.rseqs: expected an integer, got bool", id="bool"),
        pytest.param([1, "2"], "AuditAck.rseqs: expected an integer, got str", id="str"),
        pytest.param([1.0], "AuditAck.rseqs: expected an integer, got float", id="float"),
        pytest.param({"1": 1}, "AuditAck.rseqs: expected a list, got dict", id="not a list"),
    ],
)
def test_an_ack_with_bad_rseqs_is_refused(rseqs: Any, error: str) -> None:
    """The rseqs of an ack are checked in one pass, with the errors of the item by item check."""
    frame = orjson.dumps({"session": S, "batch": 1, "rseqs": rseqs, "type": "audit_ack", "v": 1})
    with pytest.raises(ProtocolError) as refused:
        decode_to_proxy(frame)
    assert str(refused.value) == error


def test_an_ack_decodes_its_rseqs() -> None:
    ack = decode_to_proxy(encode(AuditAck(session=S, batch=3, rseqs=list(range(64)))))
    assert isinstance(ack, AuditAck)
    assert ack.rseqs == list(range(64))
