"""The spool line's MACs (spool_line.LineKey): HMAC-SHA256 spelled out on hashlib states must be
the digest ``hmac`` gives, and the keyed BLAKE2b one hashlib's, for any key length, session,
rseq and body; a line of either kind opens, and nothing else does."""

from __future__ import annotations

import hashlib
import hmac
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from aip.shared.audit.spool_line import LineKey

_TAG = b"aip-spool-line-1\n"


def _reference(key: bytes, session: str, rseq: int, body: bytes) -> bytes:
    msg = _TAG + session.encode("ascii") + b"\n" + b"%d\n" % rseq + body
    return hmac.new(key, msg, hashlib.sha256).hexdigest().encode("ascii")


_TAG2 = b"aip-spool-line-2\n"


def _reference2(key: bytes, session: str, rseq: int, body: bytes) -> bytes:
    """RFC 7693 keyed BLAKE2b-256 (hashlib's), a key over 64 bytes hashed with SHA-256 first."""
    key = key if len(key) <= 64 else hashlib.sha256(key).digest()
    msg = _TAG2 + session.encode("ascii") + b"\n" + b"%d\n" % rseq + body
    return hashlib.blake2b(msg, key=key, digest_size=32).hexdigest().encode("ascii")


@settings(max_examples=300, deadline=None)
@given(
    st.binary(min_size=0, max_size=150),
    st.text(alphabet="0123456789abcdef", min_size=1, max_size=32),
    st.integers(min_value=0, max_value=2**63),
    st.binary(max_size=600),
)
def test_each_mac_is_its_reference(key: bytes, session: str, rseq: int, body: bytes) -> None:
    line_key = LineKey(key, session)
    assert line_key.mac(rseq, body) == _reference(key, session, rseq, body)
    assert line_key.mac2(rseq, body) == _reference2(key, session, rseq, body)


def test_sign_then_open_round_trip_and_tamper() -> None:
    key = os.urandom(32)
    lk = LineKey(key, "s" * 16)
    body = b'{"rseq":7,"session":"ssssssssssssssss","x":1}'
    line = lk.sign(7, body)
    assert line == _reference(key, "s" * 16, 7, body) + b" " + body + b"\n"
    assert lk.open(line[:-1]) == ({"rseq": 7, "session": "s" * 16, "x": 1}, "")
    assert lk.open(line[:-1].replace(b'"x":1', b'"x":2'))[1] == "MAC mismatch"
    assert LineKey(os.urandom(32), "s" * 16).open(line[:-1])[1] == "MAC mismatch"
    # the key state is not consumed by a line: the next line's MAC is its own
    assert lk.mac(8, body) == _reference(key, "s" * 16, 8, body)
    assert lk.mac(7, body) == _reference(key, "s" * 16, 7, body)


@settings(max_examples=300, deadline=None)
@given(
    rseq=st.integers(min_value=0, max_value=2**40),
    other=st.integers(min_value=0, max_value=2**40),
    pad=st.text(max_size=20),
    change=st.sampled_from(["none", "mac", "body", "gap", "session", "key", "empty"]),
)
def test_holds_is_open_for_a_known_rseq(rseq: int, other: int, pad: str, change: str) -> None:
    """``holds(line, r)`` (a compaction's check, no parse) is true exactly when ``open``
    takes the line and finds rseq ``r`` in it."""
    import orjson

    session, key = "0123456789abcdef", b"k" * 32
    body = orjson.dumps({"event": "decision", "session": session, "rseq": rseq, "pad": pad})
    line = LineKey(key, session).sign(rseq, body)[:-1]
    if change == "mac":
        line = (b"0" if line[:1] != b"0" else b"1") + line[1:]
    elif change == "body":
        line = line.replace(b'"rseq":%d' % rseq, b'"rseq":%d' % (rseq + 1))
    elif change == "gap":
        line = line[:64] + b"\t" + line[65:]
    elif change == "empty":
        line = line[:65]
    reader = LineKey(
        b"q" * 32 if change == "key" else key, "f" * 16 if change == "session" else session
    )
    for asked in (rseq, other):
        record, _why = reader.open(line)
        assert reader.holds(line, asked) == (record is not None and record["rseq"] == asked)


def test_either_mac_opens_and_the_signing_one_is_chosen() -> None:
    """A proxy signs with the HMAC until an approver that checks both welcomed it; a line of
    either kind opens with the key, and neither opens when anything it binds changed."""
    key, session = os.urandom(32), "0123456789abcdef"
    body = b'{"rseq":7,"session":"0123456789abcdef","x":1}'
    lk = LineKey(key, session)
    line1 = lk.sign(7, body)
    assert line1 == _reference(key, session, 7, body) + b" " + body + b"\n"
    lk.sign_mac2 = True
    line2 = lk.sign(7, body)
    assert line2 == _reference2(key, session, 7, body) + b" " + body + b"\n"
    for signed_with in (False, True):  # whatever this key signs with now
        opener = LineKey(key, session)
        opener.sign_mac2 = signed_with
        for line in (line1, line2):
            assert opener.open(line[:-1]) == ({"rseq": 7, "session": session, "x": 1}, "")
            assert opener.holds(line[:-1], 7)
            assert not opener.holds(line[:-1], 8)  # the rseq is bound
            tampered = line[:-1].replace(b'"x":1', b'"x":2')
            assert opener.open(tampered)[1] == "MAC mismatch"
            assert not opener.holds(tampered, 7)
        other = LineKey(os.urandom(32), session)
        other.sign_mac2 = signed_with
        assert other.open(line2[:-1])[1] == "MAC mismatch"
        assert LineKey(key, "fedcba9876543210").open(line2[:-1])[1] in (
            "MAC mismatch",
            "record of another session",
        )
    # a MAC of one kind under the other kind's tag is no MAC: the tags keep them apart
    assert _reference(key, session, 7, body) != lk.mac2(7, body)
