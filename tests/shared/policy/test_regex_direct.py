"""The direct RE2 calls of ``aip.shared.policy.regexes`` (full_match, search_spans,
finditer_spans) answer exactly what the google-re2 wrapper's fullmatch/search/finditer answer,
and fall back to the wrapper when its C++ object is not there."""

from __future__ import annotations

from typing import Any

import pytest
import re2

from aip.shared.policy.regexes import finditer_spans, full_match, search_spans

CASES = [
    (rb"a.c", [b"abc", b"abcd", b"xabc", b"", b"a\nc"]),
    (rb"^$", [b"", b"x", b"\n"]),
    (rb"(?s).*", [b"", b"a\nb"]),
    (rb"a*", [b"baaab", b"", b"aaa"]),
    (rb"(a)|(b(c))", [b"xxbc", b"a", b"x", b"bca"]),
    (rb"/home/user/[^\x00]*\.py", [b"/home/user/p/main.py", b"/home/user/p/main.pyc"]),
    ("é+".encode(), ["éé".encode(), b"e", "xéx".encode()]),
    (rb"", [b"abc", b""]),
]


class _Public:
    """A compiled pattern without ``_regexp``: only the public API."""

    def __init__(self, regex: Any) -> None:
        self._r = regex
        self.groups = regex.groups

    def fullmatch(self, data: bytes) -> Any:
        return self._r.fullmatch(data)

    def search(self, data: bytes) -> Any:
        return self._r.search(data)

    def finditer(self, data: bytes) -> Any:
        return self._r.finditer(data)


@pytest.mark.parametrize("wrap", [lambda r: r, _Public], ids=["direct", "public"])
@pytest.mark.parametrize(("pattern", "texts"), CASES)
def test_same_answers_as_the_wrapper(pattern: bytes, texts: list[bytes], wrap: Any) -> None:
    regex = re2.compile(pattern)
    mine = wrap(regex)
    for text in texts:
        assert full_match(mine, text) is (regex.fullmatch(text) is not None)
        m = regex.search(text)
        want = None if m is None else [m.span(g) for g in range(regex.groups + 1)]
        got = search_spans(mine, text)
        assert (None if got is None else [tuple(s) for s in got]) == want
        assert list(finditer_spans(mine, text)) == [m.span() for m in regex.finditer(text)]
