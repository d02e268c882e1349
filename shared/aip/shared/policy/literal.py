"""Narrow RE2 patterns built from values a human saw: exact literals and "this folder".

One place for both learners of patterns: ``aipctl policy suggest`` (from approved history) and
the approver's remembered decisions (from the one value on screen). A folder pattern is the
literal prefix ending at a ``/`` followed by path components that are never ``.`` or ``..``
and hold no control character, so ``/tmp/build/../../etc`` never matches what was learned
from ``/tmp/build/...`` and a newline cannot smuggle a second path past a reader of lines.
"""

from __future__ import annotations

import re
from typing import Final

_CHAR: Final = r"[^/\x00-\x1f\x7f]"
_NON_DOT: Final = r"[^/.\x00-\x1f\x7f]"
COMPONENT: Final = rf"(?:{_NON_DOT}{_CHAR}*|\.{_NON_DOT}{_CHAR}*|\.\.{_CHAR}+)"
_META: Final = re.compile(r"[\\.+*?()|\[\]{}^$]")


def re2_literal(text: str) -> str:
    """``text`` as an RE2 pattern matching exactly it (Python's re.escape also escapes a
    space, which RE2 refuses)."""
    return _META.sub(lambda m: "\\" + m.group(0), text)


def folder_prefix(value: str) -> str | None:
    """The literal folder of an absolute path (up to and with its last ``/``), or None when
    the value is no such path or the folder is the root (one component below ``/`` would be
    every top-level entry)."""
    if not value.startswith("/") or "://" in value:
        return None
    cut = value.rfind("/") + 1
    if cut <= 1:
        return None
    return value[:cut]


def folder_pattern(prefix: str, *, deep: bool = False) -> str:
    """Entries of ``prefix`` (a folder ending in ``/``); with ``deep`` also of its subfolders."""
    suffix = f"{COMPONENT}(?:/{COMPONENT})*" if deep else COMPONENT
    return re2_literal(prefix) + suffix
