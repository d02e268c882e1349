"""RE2 compilation and full-match of policy patterns (DESIGN §4.4).

Every policy and DLP regex is compiled here with google-re2 (linear time, the Go reference's
dialect); nothing falls back to Python's ``re``. Argument values are matched as UTF-8 bytes:
the re2 wrapper maps offsets back to characters for ``str`` input, which costs ~3x.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

MAX_PATTERN_CHARS: Final = 4096
# Per pattern: RE2's compile memory (the program) and, at match time, its DFA cache. RE2's
# default is 8 MiB; 2 MiB still compiles `.{0,1000}x.{0,1000}` (18,005 instructions) and keeps
# one pattern's compile under ~0.1 s here, where `\PN{1000}` took 0.9 s and 80 MB at 8 MiB.
MAX_PROGRAM_MEM_BYTES: Final = 2 << 20
# Per policy: every pattern together. A 19 KB policy of 300 accepted patterns took over a
# minute and 1.2 GB to load with no total bound; the guide's policies use < 1,000.
MAX_TOTAL_PROGRAM_SIZE: Final = 400_000  # RE2 instructions, all patterns of one policy
MAX_TOTAL_COMPILE_S: Final = 3.0
MAX_PATTERNS: Final = 1000


class CompileBudget:
    """The total cost of one policy's patterns; exceeding it fails the load, naming the rule
    whose pattern crossed the line."""

    def __init__(self) -> None:
        self.program_size = 0
        self.patterns = 0
        self.seconds = 0.0

    def charge(self, regex: Any, seconds: float) -> None:
        self.patterns += 1
        self.program_size += int(regex.programsize)
        self.seconds += seconds
        if self.patterns > MAX_PATTERNS:
            raise RegexError(f"the policy has more than {MAX_PATTERNS} patterns")
        if self.program_size > MAX_TOTAL_PROGRAM_SIZE:
            raise RegexError(
                f"the policy's patterns together compile to {self.program_size} RE2 "
                f"instructions, over the limit of {MAX_TOTAL_PROGRAM_SIZE} (this one: "
                f"{regex.programsize}); use fewer or simpler patterns"
            )
        if self.seconds > MAX_TOTAL_COMPILE_S:
            raise RegexError(
                f"compiling the policy's patterns took over {MAX_TOTAL_COMPILE_S:g} s; use "
                "fewer or simpler patterns"
            )


class RegexError(ValueError):
    """A pattern RE2 cannot (or we will not) compile; the message is for humans."""


def compile_pattern(pattern: str, budget: CompileBudget | None = None) -> Any:
    """Compile ``pattern`` with RE2 (UTF-8, ``.`` not matching newline), or raise RegexError;
    ``budget`` (one per policy load) bounds what all patterns of a policy cost together.

    ``log_errors`` is off: RE2 would otherwise print its parse errors to stderr itself.
    """
    import re2  # lazy: the approver never compiles policy patterns

    if len(pattern) > MAX_PATTERN_CHARS:
        raise RegexError(
            f"pattern is {len(pattern)} characters long; the limit is {MAX_PATTERN_CHARS}"
        )
    if "\x00" in pattern:
        raise RegexError("pattern contains a NUL character")
    options = re2.Options()
    options.log_errors = False
    options.max_mem = MAX_PROGRAM_MEM_BYTES
    started = time.monotonic()
    try:
        regex = re2.compile(pattern, options)
    except re2.error as exc:
        raise RegexError(_describe(exc)) from None
    if budget is not None:
        budget.charge(regex, time.monotonic() - started)
    return regex


def _describe(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else str(exc)
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    text = str(detail)
    if "(?!" in text or "(?=" in text or "(?<" in text:
        text += " (look-ahead and look-behind are not supported by RE2)"
    elif "\\1" in text or "backreference" in text.lower():
        text += " (back-references are not supported by RE2)"
    return text


def value_bytes(value: object) -> bytes | None:
    """The bytes a pattern is matched against (DESIGN §4.4), or None if there are none.

    A string is matched on its UTF-8 encoding; anything else on the JSON text we forward
    (``orjson`` with sorted keys): ``42``, ``true``, ``null``, ``[1,2]``, ``100.0``. A value
    that cannot be encoded (a lone surrogate, an integer beyond 64 bits) never matches.
    """
    if type(value) is str:
        try:
            return value.encode()
        except UnicodeEncodeError:
            return None
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None


def full_match(regex: Any, data: bytes) -> bool:
    """True when the whole of ``data`` matches ``regex`` (anchors in the pattern or not).

    Asks the compiled ``_re2.RE2`` under the wrapper directly: the wrapper's ``fullmatch``
    builds a generator and a match object per call (about as much again as the match itself
    on a short argument). The same C++ call with the same anchor, so the same answer; a
    wrapper without ``_regexp`` (another re2 build) takes the public API."""
    inner = getattr(regex, "_regexp", None)
    anchors = _ANCHORS or _load_anchors()
    if inner is None or anchors[0] is None:
        return regex.fullmatch(data) is not None
    return bool(inner.Match(anchors[0], data, 0, len(data))[0][0] >= 0)


def search_spans(regex: Any, data: bytes) -> Any:
    """The spans of ``regex.search(data)``'s groups (0 = the whole match, ``(-1, -1)`` for
    a group that took no part), or None when nothing matches; without the wrapper's
    generator and match object."""
    inner = getattr(regex, "_regexp", None)
    anchors = _ANCHORS or _load_anchors()
    if inner is None or anchors[1] is None:
        m = regex.search(data)
        return None if m is None else [m.span(g) for g in range(regex.groups + 1)]
    spans = inner.Match(anchors[1], data, 0, len(data))
    return None if spans[0][0] < 0 else spans


def finditer_spans(regex: Any, data: bytes) -> Iterator[tuple[int, int]]:
    """The (start, end) of each match ``regex.finditer(data)`` yields, in the same steps
    (an empty match moves on one byte), without a match object per match."""
    inner = getattr(regex, "_regexp", None)
    anchors = _ANCHORS or _load_anchors()
    if inner is None or anchors[1] is None:
        for m in regex.finditer(data):
            yield m.span()
        return
    pos, end, unanchored = 0, len(data), anchors[1]
    while True:
        span = inner.Match(unanchored, data, pos, end)[0]
        if span[0] < 0:
            return
        yield span
        if pos == end:
            return
        pos = pos + 1 if pos == span[1] else span[1]


_ANCHORS: list[Any] = []  # [ANCHOR_BOTH, UNANCHORED], filled at the first match (re2 is lazy)


def _load_anchors() -> list[Any]:
    try:
        from re2 import _re2  # the C++ binding google-re2's wrapper calls
    except ImportError:  # pragma: no cover - another re2 build: the public API serves
        _re2 = None
    anchor = getattr(getattr(_re2, "RE2", None), "Anchor", None)
    _ANCHORS[:] = [getattr(anchor, "ANCHOR_BOTH", None), getattr(anchor, "UNANCHORED", None)]
    return _ANCHORS
