"""The wire schema: round trips, strict decoding (never anything but ProtocolError)."""

from __future__ import annotations

import contextlib
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.shared.errors import AipError
from aip.shared.outcomes import Outcome
from aip.shared.protocol.codec import ProtocolError, encode
from aip.shared.protocol.frames import Message, decode_to_approver, decode_to_proxy
from aip.shared.protocol.messages import (
    HEARTBEAT_ENV,
    Ask,
    Audit,
    AuditAck,
    Bye,
    Cancel,
    Decision,
    Error,
    ErrorCode,
    Hello,
    HumanDecision,
    MsgType,
    PolicyRef,
    Welcome,
    heartbeat_ms,
)

S = "0123456789abcdef"
NONCE = "0" * 32
DIGEST = "f" * 64


def _examples() -> list[Message]:
    policy = PolicyRef(name="n", sha256="x")
    human = HumanDecision(
        approved=True, response_time_ms=3, dialog_shown_at="2026-01-01T00:00:00.000Z"
    )
    return [
        Hello(session=S, pid=1, agent_id="a", server="s", policy=policy),
        Hello(session=S, pid=1, agent_id="a", server="s", policy=policy, proto=2, key=DIGEST),
        Ask(
            session=S,
            request_id="r",
            nonce=NONCE,
            digest=DIGEST,
            tool="t",
            arguments={"a": [1, {"b": None}]},
            rule="r",
            size=3,
        ),
        Ask(
            session=S,
            request_id=-5,
            nonce=NONCE,
            digest=DIGEST,
            tool="t",
            arguments={},
            rule="",
            size=0,
            agent_id="x",
        ),
        Cancel(session=S, request_id=1, nonce=NONCE),
        Audit(session=S, batch=3, records=[{"session": S, "rseq": 0, "event": "decision"}]),
        Bye(session=S),
        Welcome(session=S, timeout_s=60.0, max_ask_bytes=10, audit_path="/a"),
        Decision(
            session=S,
            request_id=1,
            nonce=NONCE,
            digest=DIGEST,
            outcome=Outcome.HUMAN_APPROVED,
            human_decision=human,
            queue_wait_ms=4,
        ),
        Decision(session=S, request_id="1", nonce=NONCE, digest=DIGEST, outcome=Outcome.TIMEOUT),
        AuditAck(session=S, batch=3, rseqs=[0, 1]),
        Error(code=ErrorCode.HELLO_REQUIRED, about=MsgType.ASK, ref=NONCE),
    ]


@pytest.mark.parametrize("msg", _examples(), ids=lambda m: type(m).__name__)
def test_round_trip(msg: Message) -> None:
    frame = encode(msg)
    data = orjson.loads(frame)
    assert data["v"] == 1
    assert data["type"] == msg.type.value
    decode = (
        decode_to_approver
        if msg.type in ("hello", "ask", "cancel", "audit", "bye")
        else decode_to_proxy
    )
    assert decode(frame) == msg


def test_directions_are_separate() -> None:
    with pytest.raises(ProtocolError):
        decode_to_proxy(encode(Bye(session=S)))
    with pytest.raises(ProtocolError):
        decode_to_approver(encode(AuditAck(session=S, batch=1, rseqs=[])))


BAD_TO_APPROVER = [
    b"",
    b"nul\x00",
    b"[]",
    b"1",
    b'"x"',
    b"{}",
    b'{"v":1}',
    b'{"v":2,"type":"bye","session":"0123456789abcdef"}',
    b'{"v":"1","type":"bye","session":"0123456789abcdef"}',
    b'{"v":true,"type":"bye","session":"0123456789abcdef"}',
    b'{"v":1,"type":"nope"}',
    b'{"v":1,"type":"bye","session":"0123456789abcdef","extra":1}',
    b'{"v":1,"type":"bye","session":"0123456789ABCDEF"}',
    b'{"v":1,"type":"bye","session":"short"}',
    b'{"v":1,"type":"bye"}',
    b'{"v":1,"type":"cancel","session":"0123456789abcdef","request_id":1.5,"nonce":"'
    + b"0" * 32
    + b'"}',
    b'{"v":1,"type":"cancel","session":"0123456789abcdef","request_id":true,"nonce":"'
    + b"0" * 32
    + b'"}',
    b'{"v":1,"type":"cancel","session":"0123456789abcdef","request_id":9007199254740992,"nonce":"'
    + b"0" * 32
    + b'"}',
    b'{"v":1,"type":"cancel","session":"0123456789abcdef","request_id":1,"nonce":"xyz"}',
    b'{"v":1,"type":"hello","session":"0123456789abcdef","pid":"1","agent_id":"a","server":"s","policy":{"name":"n","sha256":"x"}}',
    b'{"v":1,"type":"hello","session":"0123456789abcdef","pid":1,"agent_id":"a","server":"s","policy":{"name":"n"}}',
    b'{"v":1,"type":"hello","session":"0123456789abcdef","pid":1,"agent_id":"a","server":"s","policy":{"name":"n","sha256":"x","k":1}}',
    b'{"v":1,"type":"audit","session":"0123456789abcdef","batch":1,"records":[]}',
    b'{"v":1,"type":"audit","session":"0123456789abcdef","batch":1,"records":[{"session":"0123456789abcdef"}]}',
    b'{"v":1,"type":"audit","session":"0123456789abcdef","batch":1,"records":[{"session":"ffffffffffffffff","rseq":1}]}',
    b'{"v":1,"type":"audit","session":"0123456789abcdef","batch":1,"records":[1]}',
]


@pytest.mark.parametrize("frame", BAD_TO_APPROVER)
def test_strict_decoding(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_to_approver(frame)


def test_decision_outcomes_are_restricted_and_too_many_records_refused() -> None:
    frame = encode(
        Decision(session=S, request_id=1, nonce=NONCE, digest=DIGEST, outcome=Outcome.TIMEOUT)
    )
    for outcome in ("cancelled", "policy_allowed", "bogus"):
        with pytest.raises(ProtocolError):
            decode_to_proxy(frame.replace(b'"timeout"', f'"{outcome}"'.encode()))
    records = [{"session": S, "rseq": i} for i in range(65)]
    with pytest.raises(ProtocolError):
        Audit(session=S, batch=1, records=records)


def test_protocol_error_is_a_value_error_and_an_aip_error() -> None:
    assert issubclass(ProtocolError, ValueError)
    assert issubclass(ProtocolError, AipError)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["hello", "ask", "cancel", "audit", "bye", "welcome", "decision", "x"]),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "session",
                "pid",
                "request_id",
                "nonce",
                "digest",
                "tool",
                "arguments",
                "rule",
                "size",
                "records",
                "batch",
                "policy",
                "agent_id",
                "server",
                "zz",
            ]
        ),
        JSON,
        max_size=10,
    ),
)
def test_fuzzed_frames_raise_only_protocol_errors(kind: str, fields: dict[str, object]) -> None:
    frame = json.dumps({"v": 1, "type": kind, **fields}).encode()  # big ints too
    for decode in (decode_to_approver, decode_to_proxy):
        with contextlib.suppress(ProtocolError):
            decode(frame)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_errors(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_to_approver(frame)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, (1000, 3000)),  # unset: HEARTBEAT_S
        ("0.6", (200, 600)),
        ("10", (3333, 10000)),
        ("", (1000, 3000)),
        ("soon", (1000, 3000)),
        ("0", (1000, 3000)),  # a link that could never die, or at once: the default instead
        ("-1", (1000, 3000)),
        ("nan", (1000, 3000)),
        ("inf", (1000, 3000)),
    ],
)
def test_heartbeat_comes_from_the_environment(raw: str | None, expected: tuple[int, int]) -> None:
    """Both ends read $AIP_HEARTBEAT_S (tests shorten a link loss's 3 s to under one)."""
    environ = {} if raw is None else {HEARTBEAT_ENV: raw}
    assert heartbeat_ms(environ) == expected
