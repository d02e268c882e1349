"""The spool line's MAC is HMAC-SHA256 spelled out on hashlib states (spool_line.LineKey):
it must be the digest ``hmac`` gives, for any key length, session, rseq and body."""

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


@settings(max_examples=300, deadline=None)
@given(
    st.binary(min_size=0, max_size=150),
    st.text(alphabet="0123456789abcdef", min_size=1, max_size=32),
    st.integers(min_value=0, max_value=2**63),
    st.binary(max_size=600),
)
def test_mac_is_hmac_sha256(key: bytes, session: str, rseq: int, body: bytes) -> None:
    assert LineKey(key, session).mac(rseq, body) == _reference(key, session, rseq, body)


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
