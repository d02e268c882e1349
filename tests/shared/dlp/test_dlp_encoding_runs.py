"""Encoded runs are found without a regex (``encoding._alnum_spans``, a translate + find): the
spans must be exactly ALNUM_RUN's, as RE2's ``finditer`` gives them, on any bytes."""

from __future__ import annotations

import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.shared.dlp.encoding import ALNUM_RUN, EncodingScanner, _alnum_spans
from aip.shared.dlp.precheck import re2_options

_REGEX = re2.compile(ALNUM_RUN, re2_options())

# Bytes near the edges of the run alphabet, "=" (the padding), and UTF-8 / invalid bytes.
_ALPHABET = b'aZ09+/_-=.% \n"\\\x00\x7f\xc3\xa9\xff'
runs_and_noise = st.lists(
    st.one_of(
        st.binary(max_size=6),
        st.sampled_from([b"A" * 15, b"B" * 16, b"c" * 17, b"=", b"==", b"===", b"0x" + b"f" * 32]),
        st.text(alphabet=st.sampled_from([chr(c) for c in _ALPHABET]), max_size=40).map(
            lambda s: s.encode("latin-1")
        ),
    ),
    max_size=10,
).map(b"".join)


def _re2_spans(text: bytes) -> list[tuple[int, int]]:
    return [m.span() for m in _REGEX.finditer(text)]


@settings(max_examples=1500, deadline=None)
@given(runs_and_noise)
def test_runs_are_exactly_the_regex_matches(text: bytes) -> None:
    assert list(_alnum_spans(text)) == _re2_spans(text)


def test_edges() -> None:
    for text in [
        b"",
        b"A" * 15,
        b"A" * 16,
        b"A" * 16 + b"=",
        b"A" * 16 + b"===",
        b"x" + b"A" * 16 + b"==B" + b"C" * 16 + b"=",
        b"/home/user/project/src/main.py",
        b"\xff" + b"A" * 20 + b"\xc3\xa9" + b"b" * 16,
        b"a" * 16 + b" " + b"b" * 16 + b"\n" + b"c" * 40 + b"=",
    ]:
        assert list(_alnum_spans(text)) == _re2_spans(text), text


def test_runs_and_decoded_runs_use_the_same_spans() -> None:
    enc = EncodingScanner(re2_options())
    text = b"key=QUtJQUlPU0ZPRE5ON0VYQU1QTEU= and %41%4B and " + b"0x" + b"ab" * 20
    runs = list(enc.runs(text))
    assert b"QUtJQUlPU0ZPRE5ON0VYQU1QTEU=" in runs
    spans = {(s, e) for s, e, _ in enc.decoded_runs(text)}
    assert {text[s:e] for s, e in spans} <= set(runs)


def _reference_decode(run: bytes) -> list[bytes]:
    """The base64-module spelling ``_decode_alnum`` replaced (kept here to compare)."""
    import base64
    import binascii

    out = []
    body = run.rstrip(b"=")
    hex_body = body[2:] if body[:2] in (b"0x", b"0X") else body
    if len(hex_body) >= 32 and all(c in b"0123456789abcdefABCDEF" for c in hex_body):
        out.append(binascii.unhexlify(hex_body[: len(hex_body) // 2 * 2]))
    chars = set(body)
    if chars & set(b"-_") and chars & set(b"+/"):
        return out
    if len(body) % 4 == 1:
        body = body[:-1]
    padded = body + b"=" * (-len(body) % 4)
    try:
        if chars & set(b"-_"):
            out.append(base64.urlsafe_b64decode(padded))
        else:
            out.append(base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError):
        pass
    return out


run_bytes = st.text(
    alphabet=st.sampled_from(list("ABCDEFabcdef0123456789xXzZ+/_-=")), min_size=16, max_size=80
).map(str.encode)


@settings(max_examples=1500, deadline=None)
@given(run_bytes)
def test_decoding_is_the_base64_modules(run: bytes) -> None:
    for start, end in _alnum_spans(run):
        piece = run[start:end]
        assert EncodingScanner.decode(piece) == _reference_decode(piece), piece
    assert EncodingScanner.decode(run) == _reference_decode(run), run
