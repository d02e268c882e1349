"""The DLP pre-check over a raw JSON line or decoded text (``dlp_scan.Scanner.maybe``).

One RE2 pass in the common case; rules whose loosened form fires on ordinary text (card
numbers on runs of numbers) are decided on the spot by validating their candidates instead.
"""

from __future__ import annotations

from collections.abc import Callable

from aip.shared.policy.regexes import search_spans

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

# Past this many candidate bytes in one text, validating them would cost about as much as the
# walk that would validate them again: answer "maybe" and let the walk decide.
MAX_CHECKED_BYTES: Final = 16 * 1024


class Prefilter:
    """``search(text)`` is None only when no rule can match in ``text``.

    ``plain``: alternatives (loosened rules, triggers) any match of which means "maybe".
    ``checked``: (candidate pattern, confirm) pairs; a candidate means "maybe" only when
    ``confirm`` accepts it. Both compiled into one alternation, so text with neither costs one
    pass; after the first candidate, the plain part and the candidates are searched separately.
    """

    def __init__(
        self,
        plain: list[bytes],
        checked: list[tuple[bytes, Callable[[bytes], bool]]],
        opts: Any,
        *,
        plain_inside_candidates: bool = True,
    ) -> None:
        """``plain_inside_candidates=False`` promises that no plain alternative can start on a
        character a candidate consists of (digits, " ", "-"): then one pass over the combined
        pattern, resumed after each candidate, sees every plain match."""
        import re2

        self._one_pass = not plain_inside_candidates

        self._checked = [(re2.compile(p, opts), confirm) for p, confirm in checked]
        alternatives = [*plain, *(b"(%s)" % p for p, _ in checked)]
        self._any = re2.compile(b"|".join(alternatives), opts)
        # The plain part alone is searched only after a candidate matched first: compiled
        # then (~1.3 ms for the built-in rules, at every proxy start otherwise; issue 16). It
        # is a part of ``_any``, which compiled, so it compiles too.
        self._plain_pattern, self._opts = b"|".join(plain), opts
        self._plain: Any = None
        # Group numbers of the candidate alternatives in the combined pattern, after the
        # plain part's groups.
        self._groups: list[int] = []
        n = self._any.groups - sum(1 + regex.groups for regex, _ in self._checked)
        for regex, _ in self._checked:
            self._groups.append(n + 1)
            n += 1 + regex.groups

    def search(self, text: bytes) -> bool | None:
        """True: something may match (the walk must look); None: nothing can (like re2's)."""
        spans = search_spans(self._any, text)  # the common answers without a match object
        if spans is None:
            return None
        if not any(spans[g][0] >= 0 for g in self._groups):
            return True  # a plain alternative: RE2 prefers it at the same start
        m = self._any.search(text)
        if self._one_pass:
            return self._one_pass_search(text, m)
        # The leftmost match is a candidate: no plain match starts before it, but one may start
        # inside or after it.
        pos = m.start()
        if self._plain is None:
            import re2

            self._plain = re2.compile(self._plain_pattern, self._opts)
        if self._plain.search(text, pos) is not None:
            return True
        budget = MAX_CHECKED_BYTES
        for regex, confirm in self._checked:
            for c in regex.finditer(text, pos):
                budget -= c.end() - c.start()
                if budget < 0 or confirm(c.group()):
                    return True
        return None

    def _one_pass_search(self, text: bytes, first: Any) -> bool | None:
        """The rest of ``search`` as one pass of the combined pattern from its first match."""
        budget = MAX_CHECKED_BYTES
        m = first
        while m is not None:
            k = next((i for i, g in enumerate(self._groups) if m.start(g) >= 0), None)
            if k is None:
                return True  # a plain match
            budget -= m.end() - m.start()
            if budget < 0 or self._checked[k][1](m.group()):
                return True
            m = self._any.search(text, m.end())
        return None
