"""RE2 compilation and full-match of policy patterns (DESIGN §4.4).

Every policy and DLP regex is compiled here with google-re2 (linear time, the Go reference's
dialect); nothing falls back to Python's ``re``. Argument values are matched as UTF-8 bytes:
the re2 wrapper maps offsets back to characters for ``str`` input, which costs ~3x.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

MAX_PATTERN_CHARS: Final = 4096
# RE2's own default (8 MiB) is plenty for policy patterns; stated here so a change is deliberate.
MAX_PROGRAM_MEM_BYTES: Final = 8 << 20


class RegexError(ValueError):
    """A pattern RE2 cannot (or we will not) compile; the message is for humans."""


def compile_pattern(pattern: str) -> Any:
    """Compile ``pattern`` with RE2 (UTF-8, ``.`` not matching newline), or raise RegexError.

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
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        raise RegexError(_describe(exc)) from None


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
