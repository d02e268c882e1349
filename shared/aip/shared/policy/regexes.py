"""RE2 compilation and full-match of policy patterns (DESIGN §4.4).

Every policy and DLP regex is compiled here with google-re2 (linear time, the Go reference's
dialect); nothing falls back to Python's ``re``. Argument values are matched as UTF-8 bytes:
the re2 wrapper maps offsets back to characters for ``str`` input, which costs ~3x.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

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
    """True when the whole of ``data`` matches ``regex`` (anchors in the pattern or not)."""
    return regex.fullmatch(data) is not None
