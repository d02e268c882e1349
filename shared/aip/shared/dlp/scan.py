"""Span finding and redaction over UTF-8 bytes: the engine under ``aip.shared.dlp.redactor``.

All rules' matches are merged, so overlapping rules cover a secret whole; a region is named by
its first-starting match (ties: policy patterns before built-ins). Redaction repeats until
nothing outside a marker matches, which makes it idempotent.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aip.shared.dlp.builtin import BUILTIN_RULES, Validator
from aip.shared.dlp.encoding import MAX_DECODE_DEPTH, PREFILTER_TRIGGER, EncodingScanner
from aip.shared.dlp.loose import loosen
from aip.shared.dlp.prefilter import Prefilter

MAX_PASSES: Final = 4  # fixpoint bound; in practice one or two passes
MEMO_RUNS: Final = 1024  # remembered pre-check answers per encoded run (cleared when full)
MEMO_RUN_BYTES: Final = 256  # longer runs are not remembered (bounds the memory: ~0.3 MB)
MARKER_PREFIX: Final = b"[REDACTED:"

# Raw-line triggers (dlp.Redactor.might_contain_secret): JSON escapes the decoded walk would
# undo, several text items (a secret split across them), arrays of adjacent strings, and
# base64 resource blobs (text blobs are decoded and scanned).
_ESCAPE_TRIGGER: Final = rb"\\u|\\/"
_ANY_ESCAPE_TRIGGER: Final = rb"\\"
# Look-alike characters the walk folds away (dlp_walk.SHADOW_PATTERN, as RE2 code points).
_SHADOW_TRIGGER: Final = (
    rb"[\x{00AD}\x{180E}\x{200B}-\x{200F}\x{202A}-\x{202E}\x{2060}-\x{2064}"
    rb"\x{2066}-\x{2069}\x{FEFF}\x{FF01}-\x{FF5E}]"
)
# Superset of dlp_walk.is_text_mime, for the raw line.
_TEXT_MIME: Final = (
    rb"(?i:text/|[^\"]*(?:json|xml|yaml|javascript|ecmascript|toml|csv|x-sh|sql|graphql|php))"
)
_STRUCTURE_TRIGGERS: Final = (
    rb"\"text\"\s*:[\s\S]*?\"text\"\s*:",  # lazy: the search stops at the second one
    rb"\"\s*,\s*\"(?:[^\"\\]|\\.)*\"\s*[,\]]",  # two strings in an array
    rb"\"\s*,\s*\{",  # a string then an object, in an array
    rb"\}\s*,\s*\"(?:[^\"\\]|\\.)*\"\s*[,\]]",  # an object then a string, in an array
    rb"\"blob\"\s*:",
    # media "data" of a text type (an SVG image) is decoded by the walk, like a blob
    rb"\"data\"\s*:[\s\S]*?\"mimeType\"\s*:\s*\""
    + _TEXT_MIME
    + rb"|\"mimeType\"\s*:\s*\""
    + _TEXT_MIME
    + rb"[\s\S]*?\"data\"\s*:",
)


class DlpError(Exception):
    """DLP could not scan or rebuild a message; the caller must not forward it."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    pattern: str
    prefilter: str | None = None  # None: loosen(pattern)
    validator: Validator | None = None
    # True when the pattern cannot match a character JSON escapes (", \, control characters),
    # so the raw line without decoding is enough for the prefilter.
    escape_safe: bool = False
    # Pre-checked by validating candidates instead of the loosened pattern (dlp_builtin).
    candidates: str | None = None
    confirm: Callable[[bytes], bool] | None = None


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    rule: int  # index into Scanner.rules


def re2_options() -> Any:
    import re2

    options = re2.Options()
    options.log_errors = False
    return options


class Scanner:
    """Compiled rule set; immutable after construction and safe to share."""

    def __init__(self, rules: Sequence[Rule], *, detect_encoding: bool) -> None:
        import re2

        opts = re2_options()
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.names: tuple[str, ...] = tuple(r.name for r in self.rules)
        self.markers: tuple[bytes, ...] = tuple(
            MARKER_PREFIX + n.encode() + b"]" for n in self.names
        )
        self._regexes = [re2.compile(r.pattern.encode(), opts) for r in self.rules]
        self._any: Any = None
        self._set: Any = None
        if self.rules:
            self._any = re2.compile(b"|".join(_group(r.pattern) for r in rules), opts)
            self._set = re2.Set.SearchSet(opts)
            for r in self.rules:
                self._set.Add(r.pattern.encode())
            self._set.Compile()
        names = b"|".join(re2.escape(n.encode()) for n in sorted(set(self.names)))
        self._marker_re = re2.compile(rb"\[REDACTED:(?:%s)\]" % names, opts) if names else None
        self.encoding = EncodingScanner(opts) if detect_encoding else None
        self._prefilter = self._compile_prefilter(re2, opts, raw_json=True)
        # For decoded text, without the encoded-run trigger: with detect_encoding nearly every
        # path or identifier of 16+ characters is a candidate run, so ``maybe_decoded`` decodes
        # the runs itself and checks what they decode to (far cheaper than the per-leaf walk).
        self._rules_prefilter = self._compile_prefilter(re2, opts, raw_json=False, runs=False)
        # (run, depth) -> what ``maybe_decoded`` found in its decodings: a pure function of the
        # bytes, so remembering it is exact. Paths repeat their directories call after call.
        self._run_memo: dict[tuple[bytes, int], bool] = {}

    def _compile_prefilter(self, re2: Any, opts: Any, *, raw_json: bool, runs: bool = True) -> Any:
        """One alternation of the loosened rules plus triggers; None: cannot be built soundly.

        ``raw_json``: for a JSON line (escape and structure triggers); otherwise for decoded
        text, where only the look-alike and encoded-run triggers apply. ``runs=False`` leaves
        out the encoded-run trigger (the caller then checks the decoded runs itself).
        """
        parts: list[bytes] = [_SHADOW_TRIGGER]
        if raw_json:
            parts += [_ESCAPE_TRIGGER, *_STRUCTURE_TRIGGERS]
        if self.encoding is not None and runs:
            parts.append(PREFILTER_TRIGGER)
        checked: list[tuple[bytes, Callable[[bytes], bool]]] = []
        for rule in self.rules:
            if rule.candidates is not None and rule.confirm is not None:
                # Validated candidates instead of the loosened pattern; they hold no character
                # JSON escapes, so a raw line needs no escape trigger for them.
                checked.append((rule.candidates.encode(), rule.confirm))
                if raw_json and not rule.escape_safe:
                    parts.append(_ANY_ESCAPE_TRIGGER)
                continue
            loose = rule.prefilter if rule.prefilter is not None else loosen(rule.pattern)
            try:
                re2.compile(loose.encode(), opts)
            except re2.error:
                return None  # cannot build a sound prefilter: every line is "maybe"
            parts.append(_group(loose))
            if raw_json and not rule.escape_safe:
                parts.append(_ANY_ESCAPE_TRIGGER)
        # Built-in rules and the triggers never start on a digit, " " or "-" (what candidates
        # are made of); policy patterns and encoded runs may.
        builtin = {(r.name, r.pattern) for r in BUILTIN_RULES}
        inside = (runs and self.encoding is not None) or any(
            (r.name, r.pattern) not in builtin for r in self.rules
        )
        return Prefilter(
            list(dict.fromkeys(parts)),
            list(dict.fromkeys(checked)),
            opts,
            plain_inside_candidates=inside,
        )

    def maybe(self, raw: bytes) -> bool:
        """False only when no rule can match any string decoded from the JSON text ``raw``."""
        if not self.rules:
            return False
        if self._prefilter is None:
            return True
        return self._prefilter.search(raw) is not None

    def maybe_decoded(self, text: bytes, depth: int = 0) -> bool:
        """Like ``maybe`` for decoded text (leaves joined by the walker's pre-check).

        With ``detect_encoding`` it mirrors ``spans``: the loosened rules over ``text``, then
        the same check over what each candidate run decodes to, down to MAX_DECODE_DEPTH. So
        False still means ``spans`` finds nothing, in ``text`` or in any piece of it between
        newlines (runs never cross a newline: neither run pattern matches whitespace).
        """
        if not self.rules:
            return False
        if self._rules_prefilter is None:
            return True
        if self._rules_prefilter.search(text) is not None:
            return True
        if self.encoding is None or depth >= MAX_DECODE_DEPTH:
            return False  # spans decodes nothing here either
        memo = self._run_memo
        for run in self.encoding.runs(text):
            key = (run, depth)
            found = memo.get(key)
            if found is None:
                found = any(self.maybe_decoded(d, depth + 1) for d in self.encoding.decode(run))
                if len(run) <= MEMO_RUN_BYTES:
                    if len(memo) >= MEMO_RUNS:
                        memo.clear()
                    memo[key] = found
            if found:
                return True
        return False

    # -- finding ---------------------------------------------------------------------------

    def spans(self, text: bytes, depth: int = 0) -> list[Span]:
        """Every validated match of every rule (overlapping allowed), plus encoded runs."""
        found: list[Span] = []
        if self._any is not None and self._any.search(text) is not None:
            # RE2::Set can give up (DFA memory) and report nothing: then try every rule.
            hits = self._set.Match(text) or range(len(self.rules))
            for idx in hits:
                validator = self.rules[idx].validator
                for m in self._regexes[idx].finditer(text):
                    start, end = m.span()
                    if validator is not None:
                        found += (Span(start + a, start + b, idx) for a, b in validator(m.group()))
                    elif end > start:
                        found.append(Span(start, end, idx))
        if self.encoding is not None and depth < MAX_DECODE_DEPTH:
            for start, end, decoded in self.encoding.decoded_runs(text):
                inner = self.spans(decoded, depth + 1)
                if inner:
                    found.append(Span(start, end, min(s.rule for s in inner)))
        return found

    def _marker_spans(self, text: bytes) -> list[tuple[int, int]]:
        if self._marker_re is None or MARKER_PREFIX not in text:
            return []
        return [m.span() for m in self._marker_re.finditer(text)]

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


def _group(pattern: str) -> bytes:
    """``pattern`` as one alternative of a larger alternation.

    A ``\\Q`` without its ``\\E`` quotes to the end of the pattern and would swallow the
    closing parenthesis: then the quote is closed first.
    """
    import re2

    grouped = b"(?:%s)" % pattern.encode()
    try:
        re2.compile(grouped, re2_options())
    except re2.error:
        return b"(?:%s\\E)" % pattern.encode()
    return grouped


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
