"""Name normalization (DESIGN §4.2): how tool and method names are compared.

``normalize`` = NFKC, then ``str.lower()``, then ``strip()``, then drop every character that
is not printable — in exactly this order, the reference's. Raw names are forwarded unchanged;
only comparisons use the normalized form.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# Names are short and repeat (the same few tools are called over and over), so a small cache
# turns the NFKC pass into a dict lookup on the hot path. Bounded in entries and in the
# length of what it keeps: an agent sending huge random names cannot grow it.
_CACHE_ENTRIES: Final = 4096
_CACHE_MAX_CHARS: Final = 256


def normalize(s: str) -> str:
    """Canonical comparison form of a tool or method name.

    Trimming happens before invisible characters are removed (as in the reference), so
    ``"\\u200b read_file"`` normalizes to ``" read_file"`` and matches nothing.
    """
    if len(s) <= _CACHE_MAX_CHARS:
        return _cached(s)
    return _normalize(s)


def _normalize(s: str) -> str:
    folded = unicodedata.normalize("NFKC", s).lower().strip()
    if folded.isprintable():
        return folded
    return "".join(ch for ch in folded if ch.isprintable())


_cached = lru_cache(maxsize=_CACHE_ENTRIES)(_normalize)
