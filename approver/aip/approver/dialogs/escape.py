"""Untrusted text as the dialog shows it (DESIGN §7, security.md §1.1): printable ASCII.

Plain values (``[A-Za-z0-9 _./:@=+,-]*``) are shown as is, as in the guide; everything else
as escaped JSON (ensure_ascii), so bidi controls, zero-width and newline characters are
visible escapes. Every line break a dialog shows is ours (``wrap``).
"""

from __future__ import annotations

import json
import re
import textwrap
import unicodedata
from collections.abc import Iterable
from typing import Any, Final

WIDTH: Final = 76  # columns; we wrap, so no backend can push its buttons off screen
VALUE_MAX: Final = 240  # escaped chars per value before head + tail truncation
HEAD: Final = 160
TAIL: Final = 60

_PLAIN_VALUE: Final = re.compile(r"[A-Za-z0-9 _./:@=+,-]+")
_PLAIN_NAME: Final = re.compile(r"[A-Za-z0-9_./-]{1,128}")  # tool names, argument keys
_BIDI: Final = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])
_INVISIBLE: Final = frozenset([0x115F, 0x1160, 0x3164, 0xFFA0, 0x034F, 0x180E])


def show_name(name: str) -> str:
    return name if _PLAIN_NAME.fullmatch(name) else _escaped(name)


def show_value(value: Any) -> str:
    """A value as the dialog shows it (before wrapping and truncation)."""
    if isinstance(value, str) and _PLAIN_VALUE.fullmatch(value) and value == value.strip():
        return value
    return _escaped(value)


def truncate(text: str, limit: int = VALUE_MAX) -> str:
    """Head + marker + tail: the dangerous part of an attack often sits at the end."""
    if len(text) <= limit:
        return text
    # Head and tail scale with the limit (160 + 60 at the default of 240).
    head, tail = min(HEAD, limit * 2 // 3), min(TAIL, max(limit // 4, 12))
    omitted = len(text) - head - tail
    cut = f"{text[:head]} ...[{omitted} chars omitted]... {text[-tail:]}"
    return cut if len(cut) < len(text) else text  # a marker longer than what it hides: no cut


def wrap(line: str, indent: str = "    ", width: int = WIDTH) -> list[str]:
    """Hard wrap at ``width`` columns; continuation lines are indented."""
    out = [line[:width]]
    rest = line[width:]
    step = width - len(indent)
    while rest:
        out.append(indent + rest[:step])
        rest = rest[step:]
    return out


def prose(text: str) -> list[str]:
    """Our own sentences, wrapped at word boundaries (their words are short)."""
    return textwrap.wrap(text, WIDTH, break_on_hyphens=False) or [""]


def flags(value: Any) -> list[str]:
    """What a human should be warned about in a raw value (computed before escaping)."""
    found: set[str] = set()
    non_ascii = 0
    for text in strings(value):
        for ch in text:
            cp = ord(ch)
            if cp < 0x80:
                if cp < 0x20 or cp == 0x7F:
                    found.add("control" if ch not in "\n\r" else "newline")
                continue
            non_ascii += 1
            category = unicodedata.category(ch)
            if cp in _BIDI:
                found.add("bidi-control")
            elif category == "Cf" or cp in _INVISIBLE or 0xFE00 <= cp <= 0xFE0F:
                found.add("invisible")
            elif category in ("Zl", "Zp") or cp == 0x85:
                found.add("newline")
            elif category.startswith("C"):
                found.add("control")
    result = sorted(found)
    if non_ascii:
        result.append(f"non-ASCII({non_ascii})")
    return result


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def strings(value: Any) -> Iterable[str]:
    """Every string in a JSON value, object keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def _escaped(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)
