"""Span finding and redaction over UTF-8 bytes: the engine under ``aip.shared.dlp.redactor``.

All rules' matches are merged, so overlapping rules cover a secret whole; a region is named by
its first-starting match (ties: policy patterns before built-ins). Redaction repeats until
nothing outside a marker matches, which makes it idempotent.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Callable, Sequence

from aip.shared import slotclass
from aip.shared.dlp.builtin import Validator
from aip.shared.dlp.encoding import MAX_DECODE_DEPTH, EncodingScanner
from aip.shared.dlp.precheck import PreCheck, group, re2_options
from aip.shared.dlp.shadow import ShadowView
from aip.shared.slotclass import FrozenSlotted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, TypeVar

MAX_PASSES: Final = 4  # fixpoint bound; in practice one or two passes
MARKER_PREFIX: Final = b"[REDACTED:"
if TYPE_CHECKING:  # for the type checker only: typing stays out of start-up
    _T = TypeVar("_T")


class DlpError(Exception):
    """DLP could not scan or rebuild a message; the caller must not forward it."""


class Rule(FrozenSlotted):
    """One DLP rule as the scanner runs it (policy pattern or built-in)."""

    __slots__ = (
        "candidates",
        "confirm",
        "escape_safe",
        "name",
        "pattern",
        "prefilter",
        "validator",
    )
    name: str
    pattern: str
    prefilter: str | None  # None: loosen(pattern)
    validator: Validator | None
    # True when the pattern cannot match a character JSON escapes (", \, control characters),
    # so the raw line without decoding is enough for the prefilter.
    escape_safe: bool
    # Pre-checked by validating candidates instead of the loosened pattern (dlp_builtin).
    candidates: str | None
    confirm: Callable[[bytes], bool] | None

    def __init__(
        self,
        name: str,
        pattern: str,
        prefilter: str | None = None,
        validator: Validator | None = None,
        escape_safe: bool = False,
        candidates: str | None = None,
        confirm: Callable[[bytes], bool] | None = None,
    ) -> None:
        slotclass.init(self, "name", name)
        slotclass.init(self, "pattern", pattern)
        slotclass.init(self, "prefilter", prefilter)
        slotclass.init(self, "validator", validator)
        slotclass.init(self, "escape_safe", escape_safe)
        slotclass.init(self, "candidates", candidates)
        slotclass.init(self, "confirm", confirm)


class Span(FrozenSlotted):
    """A match: ``text[start:end]`` found by ``rules[rule]``."""

    __slots__ = ("end", "rule", "start")
    start: int
    end: int
    rule: int  # index into Scanner.rules

    def __init__(self, start: int, end: int, rule: int) -> None:
        slotclass.init(self, "start", start)
        slotclass.init(self, "end", end)
        slotclass.init(self, "rule", rule)


class Scanner:
    """Compiled rule set; immutable after construction and safe to share.

    Compiled in two parts, each when first needed (issue 16: the built-ins cost ~25 ms to
    compile, most of it for matches clean text never has): the pre-check at the first
    ``maybe``; the matchers (every rule's regex, their alternation and RE2 set, the marker
    pattern) at the first ``spans``. Nothing is checked without them: a part is compiled, under
    a lock, before the first text it looks at. A rule set RE2 cannot compile raises
    ``DlpError`` there, which blocks that text (callers fail closed on it)."""

    def __init__(self, rules: Sequence[Rule], *, detect_encoding: bool) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.names: tuple[str, ...] = tuple(r.name for r in self.rules)
        self.markers: tuple[bytes, ...] = tuple(
            MARKER_PREFIX + n.encode() + b"]" for n in self.names
        )
        self._detect_encoding = detect_encoding
        self._lock = threading.Lock()
        self._pre: tuple[PreCheck, EncodingScanner | None] | None = None
        self._matchers: _Matchers | None = None

    def _prechecked(self) -> tuple[PreCheck, EncodingScanner | None]:
        found = self._pre
        if found is None:
            with self._lock:
                found = self._pre
                if found is None:
                    opts = re2_options()
                    encoding = EncodingScanner(opts) if self._detect_encoding else None
                    found = self._pre = (_compiled(PreCheck, self.rules, encoding, opts), encoding)
        return found

    def _matching(self) -> _Matchers:
        found = self._matchers
        if found is None:
            with self._lock:
                found = self._matchers
                if found is None:
                    found = self._matchers = _compiled(_Matchers, self.rules, self.names)
        return found

    @property
    def _precheck(self) -> PreCheck:
        return self._prechecked()[0]

    @property
    def encoding(self) -> EncodingScanner | None:
        return self._prechecked()[1]

    @property
    def shadow(self) -> ShadowView:
        return self._prechecked()[0].shadow

    def maybe(self, raw: bytes) -> bool:
        """False only when no rule can match any string decoded from the JSON text ``raw``
        (``aip.shared.dlp.precheck``)."""
        return self._precheck.maybe(raw)

    def maybe_decoded(self, text: bytes, depth: int = 0) -> bool:
        """Like ``maybe`` for decoded text (leaves joined by the walker's pre-check)."""
        pre = self._pre  # once compiled, without the property (this runs once per record)
        return (pre if pre is not None else self._prechecked())[0].maybe_decoded(text, depth)

    def maybe_json(self, raw: bytes) -> bool:
        """``maybe_decoded`` over the strings of JSON text without backslashes (precheck)."""
        pre = self._pre
        return (pre if pre is not None else self._prechecked())[0].maybe_json(raw)

    # -- finding ---------------------------------------------------------------------------

    def spans(self, text: bytes, depth: int = 0) -> list[Span]:
        """Every validated match of every rule (overlapping allowed), plus encoded runs."""
        found: list[Span] = []
        mx = self._matching()
        if mx.any is not None and mx.any.search(text) is not None:
            # RE2::Set can give up (DFA memory) and report nothing: then try every rule.
            hits = mx.set.Match(text) or range(len(self.rules))
            for idx in hits:
                validator = self.rules[idx].validator
                for m in mx.regexes[idx].finditer(text):
                    start, end = m.span()
                    if validator is not None:
                        found += (Span(start + a, start + b, idx) for a, b in validator(m.group()))
                    elif end > start:
                        found.append(Span(start, end, idx))
        encoding = self.encoding
        if encoding is not None and depth < MAX_DECODE_DEPTH:
            for start, end, decoded in encoding.decoded_runs(text):
                inner = self.spans(decoded, depth + 1)
                if inner:
                    found.append(Span(start, end, min(s.rule for s in inner)))
        return found

    def _marker_spans(self, text: bytes) -> list[tuple[int, int]]:
        if MARKER_PREFIX not in text:
            return []
        marker_re = self._matching().marker_re
        if marker_re is None:
            return []
        return [m.span() for m in marker_re.finditer(text)]

    def _fresh(self, text: bytes, spans: list[Span]) -> list[Span]:
        """Drop matches lying wholly inside an existing marker (a pattern matching "REDACTED")."""
        if not spans:
            return spans
        marks = self._marker_spans(text)
        if not marks:
            return spans
        starts = [s for s, _ in marks]
        out = []
        for sp in spans:
            i = bisect.bisect_right(starts, sp.start) - 1
            if i >= 0 and marks[i][1] >= sp.end:
                continue
            out.append(sp)
        return out

    # -- redacting -------------------------------------------------------------------------

    def redact(self, text: bytes) -> tuple[bytes, Counter[str]]:
        counts: Counter[str] = Counter()
        for _ in range(MAX_PASSES):
            spans = self._fresh(text, self.spans(text))
            if not spans:
                return text, counts
            text = self._apply(text, spans, counts)
        spans = self._fresh(text, self.spans(text))
        if spans:  # did not settle: give up on this text as a whole
            first = min(spans, key=lambda s: (s.start, s.rule))
            counts[self.names[first.rule]] += 1
            return self.markers[first.rule], counts
        return text, counts

    def redact_views(self, raw: bytes) -> tuple[bytes, Counter[str]]:
        """Redact ``raw`` as written and as its shadow view (invisible characters removed,
        fullwidth folded). Both views come from the original text: a match in one view can
        break a secret's spelling in the other (a card number inside a Slack token split by
        soft hyphens), so the shadow is never taken of an already-redacted text. When the
        shadow view holds a secret the text becomes its redacted shadow view; when each view
        holds one the other does not see, nothing of the text is shown."""
        red, counts = self.redact(raw)
        shadow = self.shadow.of(raw)
        if shadow is None:
            return red, counts
        red_shadow, shadow_counts = self.redact(shadow)
        if not shadow_counts:
            return red, counts
        if all(counts[name] <= shadow_counts[name] for name in counts):
            return red_shadow, shadow_counts
        both = counts | shadow_counts
        return self.markers[self.names.index(min(both))], both

    def _apply(self, text: bytes, spans: list[Span], counts: Counter[str]) -> bytes:
        out: list[bytes] = []
        pos = 0
        for start, end, rule in merge(spans, self._marker_spans(text)):
            out.append(text[pos:start])
            out.append(self.markers[rule])
            counts[self.names[rule]] += 1
            pos = end
        out.append(text[pos:])
        return b"".join(out)

    def redact_pieces(
        self, pieces: list[bytes], sep: bytes
    ) -> tuple[list[bytes], Counter[str]] | None:
        """Redact matches that cross piece boundaries of ``sep.join(pieces)``.

        Each piece loses the part of the match that lies in it (replaced by the marker).
        Returns None when no match crosses a boundary.
        """
        counts: Counter[str] = Counter()
        changed = False
        for attempt in range(MAX_PASSES + 1):
            bounds, joined = _join(pieces, sep)
            starts = [b[0] for b in bounds]
            crossing = [
                s
                for s in self._fresh(joined, self.spans(joined))
                if _piece_at(starts, s.start) != _piece_at(starts, s.end - 1)
            ]
            if not crossing:
                break
            changed = True
            last = attempt == MAX_PASSES  # did not settle: whole pieces go
            cuts: list[list[tuple[int, int, int]]] = [[] for _ in pieces]
            for start, end, rule in merge(crossing, self._marker_spans(joined)):
                counts[self.names[rule]] += 1
                for i in range(_piece_at(starts, start), _piece_at(starts, end - 1) + 1):
                    pstart, pend = bounds[i]
                    lo, hi = max(start, pstart), min(end, pend)
                    if lo >= hi:
                        continue
                    if last:
                        cuts[i] = [(0, pend - pstart, rule)]
                    else:
                        cuts[i].append((lo - pstart, hi - pstart, rule))
            pieces = [_cut(p, c, self.markers) for p, c in zip(pieces, cuts, strict=True)]
        return (pieces, counts) if changed else None


class _Matchers:
    """What ``Scanner.spans`` matches with: each rule's regex, their alternation (one pass for
    clean text) and RE2 set (which rules matched), and the pattern of our own markers."""

    def __init__(self, rules: tuple[Rule, ...], names: tuple[str, ...]) -> None:
        import re2

        opts = re2_options()
        self.regexes = [re2.compile(r.pattern.encode(), opts) for r in rules]
        self.any: Any = None
        self.set: Any = None
        if rules:
            self.any = re2.compile(b"|".join(group(r.pattern) for r in rules), opts)
            self.set = re2.Set.SearchSet(opts)
            for r in rules:
                self.set.Add(r.pattern.encode())
            self.set.Compile()
        alternation = b"|".join(re2.escape(n.encode()) for n in sorted(set(names)))
        self.marker_re = (
            re2.compile(rb"\[REDACTED:(?:%s)\]" % alternation, opts) if alternation else None
        )


def _compiled(make: Callable[..., _T], *args: Any) -> _T:
    """``make(*args)``; an RE2 compile error becomes ``DlpError`` (the text is blocked)."""
    import re2

    try:
        return make(*args)
    except re2.error as exc:
        raise DlpError(f"DLP rules cannot be compiled: {exc}") from None


def merge(spans: list[Span], marks: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Union of overlapping spans as (start, end, rule); markers overlapping a span join it."""
    # Sorted by start, then rule order: the first-starting match names the region.
    items = sorted((s.start, s.rule, s.end) for s in spans)
    marks_sorted = sorted(marks)
    regions: list[list[int]] = []
    for start, rule, end in items:
        if regions and start < regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], end)
        else:
            regions.append([start, end, rule])
    # Absorb markers that overlap a region, so a redaction never cuts a marker in half.
    # Both lists are sorted and markers do not overlap: one sweep, linear.
    j = 0
    for region in regions:
        while j < len(marks_sorted) and marks_sorted[j][1] <= region[0]:
            j += 1
        k = j
        while k < len(marks_sorted) and marks_sorted[k][0] < region[1]:
            ms, me = marks_sorted[k]
            region[0], region[1] = min(region[0], ms), max(region[1], me)
            k += 1
    out: list[tuple[int, int, int]] = []
    for start, end, rule in regions:
        if out and start < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end), out[-1][2])
        else:
            out.append((start, end, rule))
    return out


def _join(pieces: list[bytes], sep: bytes) -> tuple[list[tuple[int, int]], bytes]:
    bounds = []
    pos = 0
    for p in pieces:
        bounds.append((pos, pos + len(p)))
        pos += len(p) + len(sep)
    return bounds, sep.join(pieces)


def _piece_at(starts: list[int], offset: int) -> int:
    """Index of the piece holding ``offset``; a separator byte belongs to the piece before it."""
    return bisect.bisect_right(starts, offset) - 1


def _cut(piece: bytes, cuts: list[tuple[int, int, int]], markers: tuple[bytes, ...]) -> bytes:
    if not cuts:
        return piece
    out: list[bytes] = []
    pos = 0
    for lo, hi, rule in sorted(cuts):  # disjoint: they come from merged regions
        out += (piece[pos:lo], markers[rule])
        pos = hi
    out.append(piece[pos:])
    return b"".join(out)
