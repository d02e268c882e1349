"""Dialog text (DESIGN §7, security.md §1.1): untrusted values become printable ASCII.

Plain values (``[A-Za-z0-9 _./:@=+,-]*``) are shown as is, as in the guide; everything else
as escaped JSON (ensure_ascii), so bidi controls, zero-width and newline characters are
visible escapes. Every line break in the result is ours; long values keep head and tail.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

TITLE: Final = "Agent Identity Protocol"
WIDTH: Final = 76  # columns; we wrap, so no backend can push its buttons off screen
VALUE_MAX: Final = 240  # escaped chars per value before head + tail truncation
HEAD: Final = 160
TAIL: Final = 60
MAX_ARGS_SHOWN: Final = 12
TEXT_MAX: Final = 3500

_PLAIN_VALUE: Final = re.compile(r"[A-Za-z0-9 _./:@=+,-]+")
_PLAIN_NAME: Final = re.compile(r"[A-Za-z0-9_./-]{1,128}")  # tool names, argument keys
_BIDI: Final = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])
_INVISIBLE: Final = frozenset([0x115F, 0x1160, 0x3164, 0xFFA0, 0x034F, 0x180E])


@dataclass(frozen=True, slots=True)
class DialogFacts:
    """Everything the dialog says besides the arguments; all of it is escaped here too."""

    tool: str
    agent_id: str
    server: str
    rule: str
    ordinal: int  # this session's Nth ask in the last 60 s
    seconds_left: int
    waiting: int  # other asks waiting behind this one


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
    return f"{text[:head]} ...[{omitted} chars omitted]... {text[-tail:]}"


def wrap(line: str, indent: str = "    ", width: int = WIDTH) -> list[str]:
    """Hard wrap at ``width`` columns; continuation lines are indented."""
    out = [line[:width]]
    rest = line[width:]
    step = width - len(indent)
    while rest:
        out.append(indent + rest[:step])
        rest = rest[step:]
    return out


def flags(value: Any) -> list[str]:
    """What a human should be warned about in a raw value (computed before escaping)."""
    found: set[str] = set()
    non_ascii = 0
    for text in _strings(value):
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


def dialog_text(facts: DialogFacts, arguments: dict[str, Any]) -> str:
    """The full dialog body (the title is separate and constant).

    Many long arguments could exceed TEXT_MAX; rather than cutting the end of the text (the
    tails of the last values and the trusted closing lines), values are shown shorter."""
    text = ""
    for value_max in _VALUE_LIMITS:
        text = _dialog_text(facts, arguments, value_max)
        if len(text) <= TEXT_MAX:
            return text
    return text[: TEXT_MAX - 20] + "\n...[text cut]"  # unreachable with the limits above


_VALUE_LIMITS: Final = (VALUE_MAX, 120, 64, 40)
KEY_MAX: Final = 48  # escaped chars of an argument name


def _dialog_text(facts: DialogFacts, arguments: dict[str, Any], value_max: int) -> str:
    lines = ["The agent wants to call:", ""]
    lines += wrap(f"Tool: {show_name(facts.tool)}")
    tool_flags = flags(facts.tool)
    if tool_flags:
        lines += wrap(f"[!] tool name contains: {', '.join(tool_flags)}")
    lines.append("Arguments:" if arguments else "Arguments: (none)")
    warnings: list[str] = []
    for index, (key, value) in enumerate(arguments.items()):
        if index == MAX_ARGS_SHOWN:
            lines.append(f"  (+{len(arguments) - MAX_ARGS_SHOWN} more arguments not shown)")
            break
        shown = show_value(value)
        cut = truncate(shown, value_max)
        name = truncate(show_name(key), KEY_MAX)
        lines += wrap(f"  {name}: {cut}")
        marks = flags(value) + (["truncated"] if cut != shown else [])
        if marks:
            warnings += wrap(f"[!] {truncate(show_name(key), 24)}: {', '.join(marks)}")
    lines += warnings
    lines.append("")
    lines += wrap(f"Agent: {truncate(show_value(facts.agent_id), 120)}")
    lines += wrap(f"Server: {truncate(show_value(facts.server), 120)}")
    lines += wrap(f"Rule: {truncate(show_value(facts.rule), 120)}")
    lines.append(f"This is the {ordinal(facts.ordinal)} request from this agent in 60 s.")
    lines.append(f"Auto-deny in {facts.seconds_left} s.")
    if facts.waiting:
        lines.append(f"{facts.waiting} more request(s) waiting.")
    return "\n".join(lines)


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def display_arguments(arguments: dict[str, Any]) -> dict[str, str]:
    """Argument name -> display text (escaped, truncated, unwrapped) for ``exec:`` programs."""
    return {show_name(k): truncate(show_value(v)) for k, v in arguments.items()}


def _escaped(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
