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
