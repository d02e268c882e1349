"""A large server response checked by its structure, without decoding its long strings.

Strictness (jsontext: no duplicate key at any depth, numbers that fit, bounded nesting) is a
property of a text's structure: its keys, numbers and nesting, never of what a string value
holds. A 100 KB file read back by a server is one long string in a small envelope, and
decoding that string (then re-encoding it to prove no key was repeated) is most of what
strictness costs: about 60 µs per 100 KB, +40 % of the proxy's CPU for such a call.

So for a long line the proxy first builds its *skeleton*: the same text with every long string
*value* replaced by ``""`` (keys are kept verbatim, however long, so a repeated key is still
seen). The skeleton goes through the full strict decoder. Only a response (no ``method``)
whose skeleton passes, with an id the skeleton kept, is accepted this way, and the proxy then
never looks inside it (``Message.partial``); whatever needs its content (DLP, the tools/list
filter) decodes the whole line itself, strictly failing closed. A long string's own content
is not validated here: no decision depends on it, and an invalid one fails the client's
parse, not its reading of the envelope.

Finding string boundaries is exact for JSON: outside a string a quote always opens one, and a
string ends at the first quote preceded by an even number of backslashes. Text that needs
many steps to scan (many quotes, long backslash runs) is left to the full decoder.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

LONG_LINE_BYTES: Final = 16 * 1024  # shorter lines are decoded whole: nothing to gain
LONG_STRING_BYTES: Final = 1024
MAX_QUOTES: Final = 64  # quotes looked at (delimiters and escaped ones) before giving up
MAX_BACKSLASH_RUN: Final = 64
_WHITESPACE: Final = b" \t\n\r"


def skeleton(text: bytes) -> bytes | None:
    """``text`` with its long string values emptied, or None when that is not worth it or
    cannot be done quickly (the caller then decodes the whole text)."""
    find = text.find
    pieces: list[bytes] = []
    kept = 0  # text[kept:] is not yet in ``pieces``
    steps = 0
    i = find(b'"')
    while i >= 0:
        j = find(b'"', i + 1)
        while True:  # the closing quote: one preceded by an even run of backslashes
            steps += 1
            if j < 0 or steps > MAX_QUOTES:
                return None
            run = _backslashes_before(text, j, i)
            if run is None:
                return None
            if run % 2 == 0:
                break
            j = find(b'"', j + 1)
        if j - i - 1 >= LONG_STRING_BYTES and not _is_key(text, j + 1):
            pieces.append(text[kept:i])
            pieces.append(b'""')
            kept = j + 1
        i = find(b'"', j + 1)
    if not pieces:
        return None
    pieces.append(text[kept:])
    return b"".join(pieces)


def _backslashes_before(text: bytes, j: int, opening: int) -> int | None:
    run = 0
    k = j - 1
    while k > opening and text[k] == 0x5C:
        run += 1
        if run > MAX_BACKSLASH_RUN:
            return None
        k -= 1
    return run


def _is_key(text: bytes, after: int) -> bool:
    """Whether the string that ended just before ``after`` is an object key (a colon follows
    after optional whitespace). Unsure (a very long whitespace run) counts as a key: kept."""
    rest = text[after : after + 64].lstrip(_WHITESPACE)
    return not rest or rest[:1] == b":"
