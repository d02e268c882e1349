"""``ingest.accept_batch`` (completing the decoded records in place, a whole message checked
in one pass over it when it can be) accepts, completes, refuses, logs and acks exactly what
the per-record path with a copy of each record did (issue 16); and the other per-message
passes on the approver's record path (``Audit``'s checks, the codec's list checks, ``stamp``)
give what their per-record loops gave, errors included.

The references are those earlier versions, kept here verbatim but for one deliberate change:
an event that is not a string is refused like any other event a proxy may not send (``in``
the event set raised TypeError on a list or an object, which failed the whole message).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.approver.audit import ingest
from aip.approver.remote import bridge
from aip.approver.remote.origin import Origin
from aip.shared.protocol import codec
from aip.shared.protocol.codec import ProtocolError, need
from aip.shared.protocol.messages import Audit

S = "0123456789abcdef"
_SESSION = re.compile(r"[0-9a-f]{16}")


def reference_accept_batch(
    records: list[Any], user: str | None, warnings: list[str]
) -> tuple[list[dict[str, Any]], list[int]]:
    """accept_batch before issue 16's change: a copy of each record, one at a time."""
    good: list[dict[str, Any]] = []
    acks: list[int] = []
    matched: str | None = None
    for record in records:
        if not isinstance(record, dict):
            warnings.append("not an object")
            continue
        event, session, rseq = record.get("event"), record.get("session"), record.get("rseq")
        if type(rseq) is int:
            acks.append(rseq)
        if (
            isinstance(event, str)  # the deliberate change (see the module's docstring)
            and event in ingest.PROXY_EVENTS
            and isinstance(session, str)
            and (session == matched or _SESSION.fullmatch(session))
            and type(rseq) is int
            and rseq >= 0
        ):
            matched = session
            out = dict(record)
            if event in ingest._DECISION_EVENTS:
                out.setdefault("user", None)
                if out.get("tool") is not None:
                    out.setdefault("method", "tools/call")
                if not out.keys() >= ingest._DEFAULT_KEYS:
                    for key, value in ingest._DEFAULTS:
                        out.setdefault(key, value)
            if "user" in out:
                out["user"] = user or None
            good.append(out)
        else:
            warnings.append(str(ingest.proxy_record_problem(record)))
    return good, acks


FULL = dict(ingest._DEFAULTS) | {"user": None, "tool": "t", "agent_id": "a"}
EVENTS = ["decision", "decision", "dropped_notification", "not_forwarded", "policy_reload",
          "redaction", "genesis", "spool_rejected", None, 3]  # fmt: skip
VALUE = st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4)


@st.composite
def records(draw: st.DrawFn) -> list[Any]:
    """Half of them clean messages (every record complete, of one session), half hostile:
    missing fields, other events and sessions, bad rseqs, non-objects, unhashable events."""
    count = draw(st.integers(0, 8))
    odd = draw(st.booleans())
    out: list[Any] = []
    for i in range(count):
        record: dict[str, Any] = dict(FULL)
        record.update(event="decision", session=S, rseq=i + 1)
        if odd and draw(st.integers(0, 2)) == 0:
            record["event"] = draw(st.sampled_from(EVENTS))
        if odd and draw(st.integers(0, 3)) == 0:
            record["session"] = draw(st.sampled_from(["fedcba9876543210", "XYZ", 5, None]))
        if odd and draw(st.integers(0, 3)) == 0:
            record["rseq"] = draw(st.sampled_from([-1, True, "2", None, 2**60, 0]))
        if odd and draw(st.integers(0, 2)) == 0:
            for key in draw(st.lists(st.sampled_from([*FULL, "event", "session"]), max_size=5)):
                record.pop(key, None)
        if odd and draw(st.integers(0, 3)) == 0:
            record[draw(st.sampled_from(["user", "tool", "seq", "origin"]))] = draw(VALUE)
        out.append(record)
    if odd and out and draw(st.integers(0, 9)) == 0:
        out[0]["event"] = ["unhashable"]
    if odd and out and draw(st.integers(0, 3)) == 0:
        out.insert(draw(st.integers(0, len(out))), draw(st.sampled_from(["x", 7, None, []])))
    return out


def _shape(records: list[Any]) -> list[Any]:
    """Records with their key order: what a log line's bytes depend on."""
    return [list(r.items()) if isinstance(r, dict) else r for r in records]


@settings(max_examples=600, deadline=None)
@given(batch=records(), user=st.sampled_from(["root", "", None]))
def test_accept_batch_accepts_completes_and_refuses_as_before(
    batch: list[Any], user: str | None
) -> None:
    want_warnings: list[str] = []
    want = reference_accept_batch(copy.deepcopy(batch), user, want_warnings)
    got_warnings: list[str] = []
    with pytest.MonkeyPatch.context() as m:
        m.setattr(ingest.log, "warning", lambda _fmt, *args: got_warnings.append(*args or [_fmt]))
        good, acks = ingest.accept_batch(batch, user)
    assert (_shape(good), acks) == (_shape(want[0]), want[1])
    fixed = [
        w.removeprefix("dropping a malformed audit record from a proxy: ") for w in got_warnings
    ]
    assert fixed == want_warnings


def test_a_proxy_message_is_accepted_in_one_pass() -> None:
    """The common message takes the one-pass path: the property above compares it too."""
    batch = [dict(FULL) | {"event": "decision", "session": S, "rseq": i} for i in range(64)]
    whole = ingest._accept_whole(batch, "root")
    assert whole is not None
    assert whole[1] == list(range(64))
    assert all(r["user"] == "root" for r in whole[0])
    assert list(whole[0][0]) == [*FULL, "event", "session"]  # user in its place


def reference_audit_check(session: str, records: list[dict[str, Any]]) -> None:
    for rec in records:
        need(rec.get("session") == session, "audit record of another session")
        rseq = rec.get("rseq")
        need(type(rseq) is int and rseq >= 0, "audit record without a valid rseq")


@settings(max_examples=300, deadline=None)
@given(batch=records())
def test_audit_refuses_what_it_refused_with_the_same_error(batch: list[Any]) -> None:
    batch = [r for r in batch if isinstance(r, dict)][:64]  # the decoder's list check first
    if not batch:
        return
    try:
        reference_audit_check(S, batch)
        want = ""
    except ProtocolError as exc:
        want = str(exc)
    try:
        Audit(session=S, batch=1, records=batch)
        got = ""
    except ProtocolError as exc:
        got = str(exc)
    assert got == want


@pytest.mark.parametrize(
    ("value", "check"),
    [
        ([{}, {}, []], codec._dict_list),
        ([{}, 3], codec._dict_list),
        ("x", codec._dict_list),
        ([1, 2, True], codec._int_list),
        ([1, "2"], codec._int_list),
        ([1, 2.0], codec._int_list),
        ({}, codec._int_list),
    ],
)
def test_the_codec_list_checks_refuse_with_the_same_error(value: Any, check: Any) -> None:
    with pytest.raises(ProtocolError) as caught:
        check(value)
    what = "an object" if check is codec._dict_list else "an integer"
    bad = (
        value
        if not isinstance(value, list)
        else next(
            x for x in value if not (isinstance(x, dict) if what == "an object" else type(x) is int)
        )
    )
    kind = "a list" if not isinstance(value, list) else what
    assert str(caught.value) == f"expected {kind}, got {type(bad).__name__}"
    good = [{}, {"a": 1}] if check is codec._dict_list else [0, 5, -1]
    assert check(good) == good


@settings(max_examples=200, deadline=None)
@given(batch=records(), remote=st.booleans())
def test_stamp_gives_what_it_gave(batch: list[Any], remote: bool) -> None:
    origin = Origin("curve", "laptop", "ab" * 8, "10.0.0.2:5555") if remote else None
    want = []
    for record in copy.deepcopy(batch):
        if isinstance(record, dict):
            record = {k: v for k, v in record.items() if k != "origin"}
            if origin is not None:
                record["origin"] = origin.to_json()
        want.append(record)
    got = bridge.stamp(batch, origin)
    assert _shape(got) == _shape(want)
