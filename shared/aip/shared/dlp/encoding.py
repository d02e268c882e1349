"""Encoded runs for ``detect_encoding``: base64 (standard and URL-safe), hex and percent-encoding.

``decoded_runs`` yields each candidate run with its decoded bytes; the scanner rescans those
(up to ``MAX_DECODE_DEPTH`` levels, like gitleaks' ``--max-decode-depth``) and redacts the whole
encoded run on a hit. Decoding is best effort: a run that does not decode is simply skipped.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from urllib.parse import unquote_to_bytes

from aip.shared.policy.regexes import finditer_spans

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

MAX_DECODE_DEPTH: Final = 2
MIN_BASE64_CHARS: Final = 16  # 12 decoded bytes: shorter runs cannot hold a useful secret
MIN_HEX_CHARS: Final = 32

# Candidate runs. The alphanumeric run covers base64 (both alphabets) and hex; a percent run
# is any run of URL characters holding at least one %XX escape.
ALNUM_RUN: Final = rb"[A-Za-z0-9+/_-]{16,}={0,2}"
PERCENT_RUN: Final = rb"[^\s\"'<>%]*(?:%[0-9A-Fa-f]{2}[^\s\"'<>%]*)+"
# For the raw-line prefilter: anything that could start a candidate run.
PREFILTER_TRIGGER: Final = rb"[A-Za-z0-9+/_-]{16}|%[0-9A-Fa-f]{2}"

# ALNUM_RUN without a regex: each byte of the run alphabet becomes "a", every other " ", so
# a run is 16 "a"s found by ``bytes.find`` (C speed; a regex search per text cost 2-4 µs of
# the per-call display scan). ``_alnum_spans`` gives exactly ALNUM_RUN's leftmost-first,
# greedy matches: tests/shared/dlp/test_dlp_encoding_runs.py compares both.
_RUN_CHARS: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_RUN_MARKS: Final = bytes(0x61 if c in _RUN_CHARS else 0x20 for c in range(256))
_RUN_FIRST: Final = b"a" * MIN_BASE64_CHARS
_HEX_DIGITS: Final = b"0123456789abcdefABCDEF"
_URLSAFE_TO_STD: Final = bytes.maketrans(b"-_", b"+/")


class EncodingScanner:
    """Finds candidate runs in bytes and decodes them; compiled once per redactor."""

    def __init__(self, options: Any) -> None:
        import re2

        self._percent = re2.compile(PERCENT_RUN, options)

    def decoded_runs(self, text: bytes) -> Iterator[tuple[int, int, bytes]]:
        """Yield ``(start, end, decoded)`` for every run that decodes to something."""
        if b"%" in text:  # every percent run holds a %XX escape; most text has no "%"
            for m in self._percent.finditer(text):
                yield m.start(), m.end(), unquote_to_bytes(m.group())
        for start, end in _alnum_spans(text):
            for decoded in _decode_alnum(text[start:end]):
                yield start, end, decoded

    def runs(self, text: bytes) -> list[bytes]:
        """The candidate runs ``decoded_runs`` would decode, undecoded (see ``decode``).
        Spans only, as a list (no match objects, no generator): this runs on every
        pre-check of decoded text."""
        found = (
            [text[start:end] for start, end in finditer_spans(self._percent, text)]
            if b"%" in text
            else []
        )
        found += [text[start:end] for start, end in _alnum_spans(text)]
        return found

    @staticmethod
    def decode(run: bytes) -> list[bytes]:
        """What ``decoded_runs`` yields for one run from ``runs``."""
        if b"%" in run:  # a percent run (alnum runs never hold "%")
            return [unquote_to_bytes(run)]
        return _decode_alnum(run)


def _alnum_spans(text: bytes) -> list[tuple[int, int]]:
    """The (start, end) of each ALNUM_RUN match in ``text``, in order."""
    marks = text.translate(_RUN_MARKS)
    pos = marks.find(_RUN_FIRST)
    if pos < 0:
        return []  # the common case: no run at all
    spans = []
    while pos >= 0:
        end = marks.find(b" ", pos + MIN_BASE64_CHARS)
        if end < 0:
            end = len(text)
        # then "={0,2}", greedy
        if text[end : end + 1] == b"=":
            end += 2 if text[end + 1 : end + 2] == b"=" else 1
        spans.append((pos, end))
        pos = marks.find(_RUN_FIRST, end)
    return spans


def _decode_alnum(run: bytes) -> list[bytes]:
    """The run as hex (when it is) and as base64, each when it decodes. A list, checked with
    bytes methods and binascii directly: a new run (a path never seen) costs this on every
    record. tests/shared/dlp/test_dlp_encoding_runs.py compares it with the base64-module
    spelling it replaced."""
    out = []
    body = run.rstrip(b"=")
    hex_body = body[2:] if body[:2] in (b"0x", b"0X") else body
    if len(hex_body) >= MIN_HEX_CHARS and not hex_body.translate(None, _HEX_DIGITS):
        out.append(binascii.unhexlify(hex_body[: len(hex_body) // 2 * 2]))
    urlsafe = b"-" in body or b"_" in body
    if urlsafe and (b"+" in body or b"/" in body):
        return out  # both alphabets mixed: not base64
    if len(body) % 4 == 1:
        body = body[:-1]  # a dangling sixth of a byte; decode the rest
    padded = body + b"=" * (-len(body) % 4)
    try:
        if urlsafe:  # base64.urlsafe_b64decode: translated, then decoded leniently
            out.append(binascii.a2b_base64(padded.translate(_URLSAFE_TO_STD)))
        else:  # base64.b64decode(validate=True)
            out.append(binascii.a2b_base64(padded, strict_mode=True))
    except binascii.Error:
        pass
    return out
