"""Prefilter analysis of DLP patterns: loosened forms and escape safety.

Dropping ``^ $ \\A \\z \\b \\B`` only adds matches, so a loosened pattern finds in the raw JSON line
every match of the original in a decoded string, whatever its neighbours there (``"`` or the
``n`` of a ``\\n`` escape).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
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


# Characters a JSON encoder must escape (", \, C0 controls); "/" and non-ASCII may be escaped
# too, but the prefilter treats every \/ and \u escape in a line as "maybe" anyway.
_ESCAPED: Final = frozenset(['"', "\\", *map(chr, range(0x20))])
_SAFE_CLASS_ESCAPES: Final = frozenset("dw")  # \d \w: digits, letters, underscore
_SAFE_POSIX: Final = frozenset({"alpha", "digit", "alnum", "upper", "lower", "xdigit", "word"})


def escape_safe(pattern: str) -> bool:
    """True when no match of ``pattern`` can contain a character JSON escapes.

    Conservative: ``.``, negated classes, ``\\s \\S \\W \\D \\p``, octal and hex escapes and
    unknown constructs count as unsafe. A safe pattern's matches appear verbatim in the raw
    JSON line, so the line with escapes still in it can be prefiltered without decoding.
    """
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "Q":
                end = pattern.find("\\E", i + 2)
                literal = pattern[i + 2 : n if end < 0 else end]
                if any(c in _ESCAPED for c in literal):
                    return False
                i = n if end < 0 else end + 2
                continue
            if not (nxt in _DROPPED_ESCAPES or nxt in _SAFE_CLASS_ESCAPES or _safe_escaped(nxt)):
                return False
            i += 2
        elif ch == "[":
            end = _class_end(pattern, i)
            if not _class_safe(pattern[i + 1 : end - 1]):
                return False
            i = end
        elif ch == "." or ch in _ESCAPED:
            return False
        else:
            i += 1
    return True


def _safe_escaped(ch: str) -> bool:
    """An escaped punctuation character stands for itself; letters and digits are classes,
    control escapes (\\n \\t ...) or numeric escapes, all treated as unsafe."""
    return not ch.isalnum() and ch not in _ESCAPED


def _class_safe(body: str) -> bool:
    if body.startswith("^"):
        return False
    chars: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch == "\\" and i + 1 < n:
            nxt = body[i + 1]
            if nxt in _SAFE_CLASS_ESCAPES:
                i += 2
                continue
            if not _safe_escaped(nxt):
                return False
            chars.append(nxt)
            i += 2
        elif body.startswith("[:", i):
            close = body.find(":]", i + 2)
            if close < 0 or body[i + 2 : close] not in _SAFE_POSIX:
                return False
            i = close + 2
        else:
            chars.append(ch)
            i += 1
        # A range a-b: check every escaped character against its bounds.
        if len(chars) >= 3 and chars[-2] == "-":  # conservative: an escaped \- counts too
            lo, hi = chars[-3], chars[-1]
            if any(lo <= c <= hi for c in _ESCAPED):
                return False
    return not any(c in _ESCAPED for c in chars)
