"""Path candidates in a JSON value (DESIGN §4.5): every string leaf and dict key, its
whitespace tokens and the pieces glued to shell or list punctuation, in each Unicode spelling.

What a candidate *is* (absolute, relative with a separator, or a bare name) is decided by
``aip.shared.policy.protected``; this module only finds the strings. More candidates only
ever block more, so the rules here err on the side of yielding.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import unquote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

# Shell and list punctuation a path can be glued to: ``cat</etc/shadow``, ``a;cat ~/.ssh/x``,
# ``--key=~/.ssh/id``, ``["/a","/b"]``.
GLUE: Final = re.compile(r"[\s;|&<>,()'\"`={}\[\]]+")
# A server may normalize what it is given (server-filesystem matches NFC-equivalent names;
# macOS file systems store NFD): every spelling is a candidate of its own.
FORMS: Final = ("NFC", "NFD", "NFKC", "NFKD")


def leaves(value: object) -> list[str]:
    """Every string leaf and dict key of a JSON value, at any depth: dict keys in order, then
    the values last to first (a stack). A list, not a generator: the caller checks them all
    unless one hits, and appending costs less than a generator's resumptions."""
    out: list[str]
    stack: list[Any]
    if type(value) is dict:  # the arguments object: as the loop below would take it first
        out = [key for key in value if isinstance(key, str)]
        stack = list(value.values())
    else:
        out, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str):
                    out.append(key)
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
    return out


def spellings(text: str) -> tuple[str, ...]:
    """``text`` and its NFC, NFD, NFKC and NFKD forms (ASCII has only itself)."""
    if text.isascii():
        return (text,)
    out = [text]
    for form in FORMS:
        other = unicodedata.normalize(form, text)
        if other not in out:
            out.append(other)
    return tuple(out)


def tokens(text: str) -> Iterator[str]:
    """The text itself, its whitespace tokens, the pieces between glue punctuation and the
    ``host:path`` parts of those (``scp u@h:~/.ssh/x``); each also percent-decoded when it
    holds a ``%``. May repeat a piece: the caller checks each distinct one once."""
    pieces = GLUE.split(text)
    if len(pieces) == 1:
        # No whitespace (\s is str.isspace, as split() uses) and no punctuation: the text and
        # its host:path parts are all the three passes below would find.
        yield from _with_parts(text)
        return
    yield text
    yield from text.split()
    for piece in pieces:
        if piece:
            yield from _with_parts(piece)


def _with_parts(piece: str) -> Iterator[str]:
    yield piece
    if ":" in piece and not piece.startswith("file:"):
        for sub in piece.split(":")[1:]:
            if sub:
                yield sub
    if "%" in piece:
        yield unquote(piece)  # %2e%2e/ and friends, for a server that decodes
