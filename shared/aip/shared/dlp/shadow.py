"""The "shadow" view DLP also scans (security.md §6.3): text with every invisible character
removed and fullwidth ASCII folded to ASCII, so ``AKIA`` + U+034F + ``IOSF...`` is still a key.

Invisible means Unicode Default_Ignorable_Code_Point or general category Cf (format). Python's
``unicodedata`` has categories but not that derived property, so both sets are embedded from
the Unicode Character Database 16.0 (tests/shared/dlp/test_dlp_shadow.py checks them against
``unicodedata`` and the property's definition).
"""

from __future__ import annotations

import functools

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

# DerivedCoreProperties.txt, Default_Ignorable_Code_Point (UCD 16.0), adjacent ranges merged.
# Definition: Other_Default_Ignorable_Code_Point + Cf + Variation_Selector - White_Space
# - FFF9..FFFB - 13430..1343F - Prepended_Concatenation_Mark. Besides Cf it holds the
# combining grapheme joiner U+034F, the Hangul fillers (U+115F U+1160 U+3164 U+FFA0), Khmer
# inherent vowels, variation selectors (U+180B-180F, U+FE00-FE0F, U+E0100-E01EF) and
# reserved code points kept for future invisible characters (U+2065, U+FFF0-FFF8, U+E0xxx).
DEFAULT_IGNORABLE: Final = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)  # fmt: skip
# Category Cf outside Default_Ignorable (UCD 16.0): the definition leaves them out because they
# render visibly (Arabic number signs, interlinear annotation, Egyptian hieroglyph controls);
# inside a token they are still noise, so the shadow view drops them too.
FORMAT_VISIBLE: Final = (
    (0x0600, 0x0605), (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891),
    (0x08E2, 0x08E2), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
)  # fmt: skip
FULLWIDTH: Final = (0xFF01, 0xFF5E)  # FULLWIDTH EXCLAMATION MARK..FULLWIDTH TILDE
FULLWIDTH_OFFSET: Final = 0xFEE0  # U+FF21 "A" - 0xFEE0 = "A"

INVISIBLE_RANGES: Final = tuple(sorted(DEFAULT_IGNORABLE + FORMAT_VISIBLE))
SHADOW_RANGES: Final = (*INVISIBLE_RANGES, FULLWIDTH)


@functools.cache
def shadow_table() -> dict[int, int | None]:
    """``str.translate``'s table for the shadow view. Built on first use: only text with more
    than MAX_DISTINCT distinct shadow characters needs it, and its ~4,200 entries (most of
    them the tag block U+E0000-E0FFF) hold ~0.3 MB and ~1 ms of start-up (issue 16)."""
    return {
        **{c: None for lo, hi in INVISIBLE_RANGES for c in range(lo, hi + 1)},
        **{c: c - FULLWIDTH_OFFSET for c in range(FULLWIDTH[0], FULLWIDTH[1] + 1)},
    }


def _class(escape: str) -> str:
    return (
        "["
        + "".join(
            escape.format(lo) if lo == hi else escape.format(lo) + "-" + escape.format(hi)
            for lo, hi in SHADOW_RANGES
        )
        + "]"
    )


SHADOW_RE2: Final = _class("\\x{{{:04X}}}")  # RE2 syntax, for UTF-8 text
# Distinct shadow characters removed one ``bytes.replace`` each (text usually has one or two:
# the emoji joiner and variation selector); past this many, one decode-translate-encode.
MAX_DISTINCT: Final = 16
_FOLDED: Final = {
    chr(c).encode(): bytes([c - FULLWIDTH_OFFSET]) for c in range(FULLWIDTH[0], FULLWIDTH[1] + 1)
}


def shadow_bytes(raw: bytes) -> bytes:
    """The shadow view of UTF-8 ``raw``; bytes that are not UTF-8 stay as they are."""
    text = raw.decode("utf-8", "surrogateescape")
    return text.translate(shadow_table()).encode("utf-8", "surrogateescape")


class ShadowView:
    """Finds shadow characters in UTF-8 text with one RE2 pass and removes them."""

    def __init__(self, re2: Any, opts: Any) -> None:
        self._chars = re2.compile(SHADOW_RE2.encode(), opts)

    def of(self, text: bytes) -> bytes | None:
        """``text``'s shadow view; None when it has no shadow character (the common case)."""
        if text.isascii():
            return None
        m = self._chars.search(text)
        if m is None:
            return None
        for _ in range(MAX_DISTINCT):
            ch = m.group()
            text = text.replace(ch, _FOLDED.get(ch, b""))
            m = self._chars.search(text, m.start())
            if m is None:
                return text
        return shadow_bytes(text)
