"""How ``aipctl`` talks to its user: plain lines on stdout, notes on stderr, colour only on a TTY.

Every ``aipctl`` command writes through here (the lint bans ``print`` in the package), so
``--json`` output, colour and ``NO_COLOR`` are decided in one place.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Final, TextIO

_COLOURS: Final = {"red": "31", "yellow": "33", "green": "32", "bold": "1", "dim": "2"}


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
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    """A note for the human (hints, warnings): stderr, so stdout stays pipeable."""
    sys.stderr.write(text + "\n")


def out_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
