"""One JSON text off the MCP stdio wire, decoded strictly in both directions, and the id a
refused text still shows (so every refusal can answer it).

What the proxy checks and what it forwards are the same message: the text is forwarded as the
peer wrote it, so it must decode to one value for every reader. Refused: invalid UTF-8 and
anything else that is not JSON (RFC 8259), duplicate keys at any depth (readers disagree on
which one wins: orjson and the SDKs keep the last, a prefix scan sees the first), a number
that overflows a double, nesting deeper than ``MAX_DEPTH``. Accepted although orjson refuses
it: a lone surrogate escape (``"\\ud800"``) is valid JSON; the checked value carries U+FFFD in
its place (nothing downstream can encode a lone surrogate) while the text goes on unchanged.
Integers beyond 64 bits are checked as orjson reads them (the nearest double) and forwarded
exactly as written.

The fast path is orjson: a text equal to ``orjson.dumps`` of its value (compact, as SDKs write)
cannot hold a duplicate key; any other text also goes through the stdlib parser to find them.
"""

from __future__ import annotations

import functools
import json
import math
import re

import orjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

# orjson.dumps refuses deeper values, and records and asks re-serialize what they carry.
MAX_DEPTH: Final = 254
SCAN_ID_BYTES: Final = 1 << 20  # the lenient id scan reads no further than this


class TextError(ValueError):
    """A refused text; ``parse`` True when it is not JSON at all (-32700), else -32600."""

    def __init__(self, detail: str, *, parse: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.parse = parse


def decode(text: bytes) -> Any:
    """The value of one JSON text (no surrounding whitespace needed), checked as above."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _decode_slow(text)
    try:
        if orjson.dumps(value) == text:
            return value
    except TypeError:  # "Recursion limit reached"
        raise TextError(f"nested deeper than {MAX_DEPTH} levels") from None
    _stdlib_loads(text)  # duplicate keys: the one thing orjson let through
    return value


class _Duplicate(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Duplicate
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(token: str) -> float:
    value = float(token)
    if math.isinf(value):
        raise _OutOfRange
    return value


class _OutOfRange(Exception):
    pass


def _stdlib_loads(text: bytes) -> Any:
    try:
        # Decoded here: json.loads(bytes) would also guess UTF-16 and UTF-32.
        return json.loads(
            text.decode("utf-8"),
            object_pairs_hook=_pairs,
            parse_constant=_no_constant,
            parse_float=_finite,
        )
    except _Duplicate:
        raise TextError("duplicate key in object") from None
    except _OutOfRange:
        raise TextError("number out of range (overflows a double)") from None
    except RecursionError:
        raise TextError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        raise TextError("invalid JSON", parse=True) from None


def _decode_slow(text: bytes) -> Any:
    """orjson refused the text: valid JSON it rejects has lone surrogates (or overflows)."""
    value = _checked_view(_stdlib_loads(text), 0)
    try:
        orjson.dumps(value)
    except TypeError:
        raise TextError(f"nested deeper than {MAX_DEPTH} levels") from None
    return value


# The three patterns below serve rare paths (a text orjson refused, a redacted message, a
# refused text's id): compiled at first use, not at every start (~1.2 ms, issue 16).
@functools.cache
def _surrogate() -> re.Pattern[str]:
    return re.compile("[\ud800-\udfff]")


_I64_MIN: Final = -(2**63)
_U64_MAX: Final = 2**64 - 1


def _checked_view(value: Any, depth: int) -> Any:
    """What the policy sees of a value orjson could not read: U+FFFD for lone surrogates,
    orjson's double for integers beyond 64 bits."""
    if depth > MAX_DEPTH:
        raise TextError(f"nested deeper than {MAX_DEPTH} levels")
    t = type(value)
    if t is str:
        return _surrogate().sub("\ufffd", value)
    if t is int:
        return value if _I64_MIN <= value <= _U64_MAX else float(value)
    if t is list:
        return [_checked_view(v, depth + 1) for v in value]
    if t is dict:
        out = {_surrogate().sub("\ufffd", k): _checked_view(v, depth + 1) for k, v in value.items()}
        if len(out) != len(value):
            raise TextError("keys that differ only in lone surrogates")
        return out
    return value


# ---- a changed message, re-serialized ----


class _Number(str):
    """A number token as written (``-0``, ``1E5``, ``18446744073709551616``)."""

    __slots__ = ()


def reserialize(value: Any, text: bytes) -> bytes:
    """``value`` (a message the policy changed, e.g. redacted arguments) as JSON, keeping
    every number and string that it still has unchanged at the same place in ``text`` (the
    line it came from) exactly as ``text`` wrote it: a redaction changes only what it
    redacts, not ``1E5``, ``-0``, a 65-bit integer or a lone surrogate next to it."""
    original = json.loads(
        text.decode("utf-8"), parse_int=_Number, parse_float=_Number, parse_constant=_Number
    )
    return _dump(value, original).encode("utf-8", "surrogatepass")


def _dump(value: Any, original: Any) -> str:
    t = type(value)
    if t is dict:
        was = original if type(original) is dict else {}
        items = (f"{_string(k)}:{_dump(v, was.get(k, _NOTHING))}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if t is list:
        old: list[Any] = original if type(original) is list else []
        parts = (_dump(v, old[i] if i < len(old) else _NOTHING) for i, v in enumerate(value))
        return "[" + ",".join(parts) + "]"
    if type(original) is _Number and t in (int, float) and orjson.loads(str(original)) == value:
        return str(original)
    if t is str and type(original) is str and _checked_view(original, 0) == value:
        return _string(original)  # unchanged: its lone surrogates stay
    return orjson.dumps(value).decode("utf-8")


_NOTHING: Final = object()


def _string(s: str) -> str:
    if _surrogate().search(s):
        return json.dumps(s)  # escaped: a lone surrogate has no UTF-8 form
    return orjson.dumps(s).decode("utf-8")


# ---- the id of a refused text ----


@functools.cache
def _id_scan() -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """A string or structural token; what follows a key up to its string or integer value."""
    return (
        re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]]'),
        re.compile(rb'\s*:\s*("(?:[^"\\]|\\.)*"|-?(?:0|[1-9][0-9]*)(?![0-9.eE]))'),
    )


def scan_id(text: bytes) -> str | int | None:
    """The string or integer value of the top-level ``"id"`` member, read leniently from a
    text that may be broken, truncated or only the head of a line; None when there is none.
    Integers of any size: the reply must carry the id the client wrote."""
    head = text[:SCAN_ID_BYTES]
    start = len(head) - len(head.lstrip())
    if head[start : start + 1] != b"{":
        return None
    depth = 0
    token_re, value_re = _id_scan()
    for m in token_re.finditer(head, start):
        token = m.group()
        if token in (b"{", b"["):
            depth += 1
        elif token in (b"}", b"]"):
            depth -= 1
            if depth <= 0:
                return None
        elif depth == 1 and token == b'"id"':
            v = value_re.match(head, m.end())
            if v is not None:
                return _id_value(v.group(1))
    return None


def _id_value(token: bytes) -> str | int | None:
    try:
        value = json.loads(token.decode("utf-8"))
    except ValueError:
        return None
    if type(value) is str and _surrogate().search(value):
        return None  # cannot be echoed as the client wrote it
    return value if type(value) in (str, int) else None
