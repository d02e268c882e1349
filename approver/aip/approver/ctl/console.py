"""How ``aipctl`` talks to its user: plain lines on stdout, notes on stderr, colour only on a TTY.

Every ``aipctl`` command writes through here (the lint bans ``print`` in the package), so
``--json`` output, colour and ``NO_COLOR`` are decided in one place. The rule enforced here:
everything ``aipctl`` prints is printable ASCII plus newlines, or escaped JSON with ``--json``.
Records, policies and client configs are attacker-reachable text; a value that reaches a
line unescaped by its caller is still escaped here, so no record can drive the terminal
(escape sequences, bidi overrides, C1 controls). Our own colour codes are the one exception,
and only on a terminal.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any, Final, TextIO

_COLOURS: Final = {"red": "31", "yellow": "33", "green": "32", "bold": "1", "dim": "2"}
_UNPRINTABLE: Final = re.compile(r"[^\x20-\x7e\n]")
_OURS_OR_UNPRINTABLE: Final = re.compile(r"\x1b\[(?:31|33|32|1|2|0)m|[^\x20-\x7e\n]")


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: str, stream: TextIO | None = None) -> str:
    """``text`` as printable ASCII (and newlines): anything else becomes a visible escape.
    On a colour terminal our own SGR colour codes (from ``paint``) stay."""
    if text.isascii() and text.isprintable():
        return text
    if colour_enabled(stream or sys.stdout):
        return _OURS_OR_UNPRINTABLE.sub(
            lambda m: m.group(0) if len(m.group(0)) > 1 else _escape(m.group(0)), text
        )
    return _UNPRINTABLE.sub(lambda m: _escape(m.group(0)), text)


def colour_enabled(stream: TextIO) -> bool:
    """Colour only for a terminal, and never when ``NO_COLOR`` is set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


def paint(text: str, colour: str, stream: TextIO | None = None) -> str:
    if not colour_enabled(stream or sys.stdout):
        return text
    return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m"


def out(text: str = "") -> None:
    sys.stdout.write(printable(text, sys.stdout) + "\n")


def err(text: str) -> None:
    """A note for the human (hints, warnings): stderr, so stdout stays pipeable."""
    sys.stderr.write(printable(text, sys.stderr) + "\n")


def json_text(value: Any, indent: int | None = 2) -> str:
    """JSON in printable ASCII: every other character (bidi, C1, DEL) as a \\u escape,
    which JSON readers decode to the same value."""
    text = json.dumps(value, indent=indent, ensure_ascii=True, sort_keys=False)
    return text.replace("\x7f", "\\u007f")


def out_json(value: Any) -> None:
    sys.stdout.write(json_text(value) + "\n")


def progress(label: str, min_total: int) -> Callable[[int, int], None] | None:
    """A percentage for long work on stderr, only when stderr is a terminal and the work is at
    least ``min_total`` (small jobs finish in a blink: no flicker); the line is cleared at the
    end. None when nothing would be shown."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        if total < min_total:
            return
        sys.stderr.write(f"\r{printable(label, sys.stderr)} {100 * done // max(total, 1):3d}%")
        if done >= total:
            sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()

    return show
