"""Loosened DLP patterns for the raw-line prefilter: the same pattern without position assertions.

Removing ``^ $ \\A \\z \\b \\B`` (outside character classes and ``\\Q...\\E``) can only add
matches, so a loosened pattern matches the raw JSON line wherever the original matches one of
its decoded strings at a different position or next to different neighbours (a string leaf
starts after ``"`` in the line, and ``\\n`` before a token is a word character there).
"""

from __future__ import annotations

from typing import Final

_DROPPED_ESCAPES: Final = frozenset("bBAz")
_BRACED_ESCAPES: Final = frozenset("pPx")  # \p{Greek}, \P{^Greek}, \x{41}: copy the braces


def loosen(pattern: str) -> str:
    """``pattern`` with every position assertion removed; may not compile (caller checks)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "Q":  # literal text up to \E
                end = pattern.find("\\E", i + 2)
                end = n if end < 0 else end + 2
                out.append(pattern[i:end])
                i = end
            elif nxt in _DROPPED_ESCAPES:
                i += 2
            elif nxt in _BRACED_ESCAPES and pattern.startswith("{", i + 2):
                end = pattern.find("}", i + 2)
                end = n if end < 0 else end + 1
                out.append(pattern[i:end])
                i = end
            else:
                out.append(pattern[i : i + 2])
                i += 2
        elif ch == "[":
            end = _class_end(pattern, i)
            out.append(pattern[i:end])
            i = end
        elif ch in "^$":
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _class_end(pattern: str, start: int) -> int:
    """Index just past the character class opening at ``start``."""
    i, n = start + 1, len(pattern)
    if i < n and pattern[i] == "^":
        i += 1
    if i < n and pattern[i] == "]":  # a leading ] is a literal
        i += 1
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if pattern.startswith(("p{", "P{", "x{"), i + 1):
                close = pattern.find("}", i)
                i = n if close < 0 else close + 1
            else:
                i += 2
        elif ch == "[" and pattern.startswith("[:", i):
            close = pattern.find(":]", i + 2)
            i = i + 1 if close < 0 else close + 2
        elif ch == "]":
            return i + 1
        else:
            i += 1
    return n
