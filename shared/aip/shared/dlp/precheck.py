"""The DLP pre-check (``Scanner.maybe``): can any rule match in this JSON line or text?

One RE2 pass answers for clean text; only a "maybe" leads to the decode-and-walk path. Text
holding invisible or fullwidth characters (aip.shared.dlp.shadow) is checked again in its
plain and its shadow view, which is what the walk scans.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aip.shared.dlp.builtin import BUILTIN_RULES
from aip.shared.dlp.encoding import MAX_DECODE_DEPTH, PREFILTER_TRIGGER, EncodingScanner
from aip.shared.dlp.loose import loosen
from aip.shared.dlp.prefilter import Prefilter
from aip.shared.dlp.shadow import SHADOW_RE2, ShadowView

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, Protocol

MEMO_RUNS: Final = 1024  # remembered pre-check answers per encoded run (cleared when full)
MEMO_RUN_BYTES: Final = 256  # longer runs are not remembered (bounds the memory: ~0.3 MB)

# Raw-line triggers (dlp.Redactor.might_contain_secret): JSON escapes the decoded walk would
# undo, several text items (a secret split across them), arrays of adjacent strings, and
# base64 resource blobs (text blobs are decoded and scanned).
_ESCAPE_TRIGGER: Final = rb"\\u|\\/"
_ANY_ESCAPE_TRIGGER: Final = rb"\\"
_NEVER: Final = rb"\b\B"  # the plain part when every rule is pre-checked by candidates
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


if TYPE_CHECKING:  # for the type checker only: typing stays out of start-up

    class CheckedRule(Protocol):
        """What the pre-check reads of a rule (``aip.shared.dlp.scan.Rule``)."""

        @property
        def name(self) -> str: ...
        @property
        def pattern(self) -> str: ...
        @property
        def prefilter(self) -> str | None: ...
        @property
        def escape_safe(self) -> bool: ...
        @property
        def candidates(self) -> str | None: ...
        @property
        def confirm(self) -> Callable[[bytes], bool] | None: ...


def re2_options() -> Any:
    import re2

    options = re2.Options()
    options.log_errors = False
    return options


def group(pattern: str) -> bytes:
    """``pattern`` as one alternative of a larger alternation.

    A ``\\Q`` without its ``\\E`` quotes to the end of the pattern and would swallow the
    closing parenthesis: then the quote is closed first.
    """
    grouped = b"(?:%s)" % pattern.encode()
    if "\\Q" not in pattern:  # nothing else can escape the group: no test compile (~0.1 ms)
        return grouped
    import re2

    try:
        re2.compile(grouped, re2_options())
    except re2.error:
        return b"(?:%s\\E)" % pattern.encode()
    return grouped


class PreCheck:
    """The compiled pre-checks of one rule set; safe to share (the memo only caches)."""

    def __init__(
        self, rules: Sequence[CheckedRule], encoding: EncodingScanner | None, opts: Any
    ) -> None:
        import re2

        self.rules = tuple(rules)
        self.encoding = encoding
        self.shadow = ShadowView(re2, opts)
        # The pre-checks trigger on shadow characters in the same pass (clean text costs no
        # more); text that has them is checked again without that trigger, in its plain and
        # its shadow view: emoji carry U+FE0F and U+200D, and such text is common enough not
        # to send it all down the decode-and-walk path.
        self._re2, self._opts = re2, opts
        # The raw-line pre-check (``maybe``) compiles at the first line it checks: the display
        # redactor built at start-up only ever checks decoded values (~3 ms, issue 16).
        self._raw: list[Prefilter | None] = []
        # For decoded text, without the encoded-run trigger: with detect_encoding nearly every
        # path or identifier of 16+ characters is a candidate run, so ``maybe_decoded`` decodes
        # the runs itself and checks what they decode to (far cheaper than the per-leaf walk).
        # Compiled at the first decoded text (a clean display value needs only ``_json``).
        self._decoded: list[Prefilter | None] = []
        # The same without the look-alike trigger, compiled when text first has such a
        # character (most sessions never need them: their DFAs would cost memory for nothing).
        self._plain: dict[bool, Prefilter | None] = {}
        # For ``maybe_json``: the raw-line triggers without the encoded-run one (compiled at
        # the first use: only the display redactor checks JSON text this way).
        self._json: list[Prefilter | None] = []
        # (run, depth) -> what ``maybe_decoded`` found in its decodings: a pure function of the
        # bytes, so remembering it is exact. Paths repeat their directories call after call.
        self._run_memo: dict[tuple[bytes, int], bool] = {}

    def _compile(
        self, re2: Any, opts: Any, *, raw_json: bool, runs: bool = True, shadow: bool = True
    ) -> Prefilter | None:
        """One alternation of the loosened rules plus triggers; None: cannot be built soundly.

        ``raw_json``: for a JSON line (escape and structure triggers); otherwise for decoded
        text, where only the look-alike and encoded-run triggers apply. ``runs=False`` leaves
        out the encoded-run trigger (the caller then checks the decoded runs itself);
        ``shadow=False`` the look-alike trigger (for a second look at text that has them).
        """
        parts: list[bytes] = [SHADOW_RE2.encode()] if shadow else []
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
            parts.append(group(loose))
            if raw_json and not rule.escape_safe:
                parts.append(_ANY_ESCAPE_TRIGGER)
        # Built-in rules and the triggers never start on a digit, " " or "-" (what candidates
        # are made of); policy patterns and encoded runs may.
        builtin = {(r.name, r.pattern) for r in BUILTIN_RULES}
        inside = (runs and self.encoding is not None) or any(
            (r.name, r.pattern) not in builtin for r in self.rules
        )
        return Prefilter(
            list(dict.fromkeys(parts)) or [_NEVER],
            list(dict.fromkeys(checked)),
            opts,
            plain_inside_candidates=inside,
        )

    @property
    def _rules_prefilter(self) -> Prefilter | None:
        if not self._decoded:  # a race compiles it twice at worst; both results are equal
            self._decoded.append(self._compile(self._re2, self._opts, raw_json=False, runs=False))
        return self._decoded[0]

    @property
    def _prefilter(self) -> Prefilter | None:
        if not self._raw:  # a race compiles it twice at worst; both results are equal
            self._raw.append(self._compile(self._re2, self._opts, raw_json=True))
        return self._raw[0]

    def _plain_prefilter(self, *, raw_json: bool) -> Prefilter | None:
        found = self._plain.get(raw_json, False)
        if found is False:  # a race compiles it twice at worst; both results are equal
            found = self._compile(
                self._re2, self._opts, raw_json=raw_json, runs=False, shadow=False
            )
            self._plain[raw_json] = found
        return found  # type: ignore[return-value]

    def maybe(self, raw: bytes) -> bool:
        """False only when no rule can match any string decoded from the JSON text ``raw``,
        nor the shadow view of one (the walk scans both)."""
        if not self.rules:
            return False
        pre = self._raw[0] if self._raw else self._prefilter
        if pre is None:
            return True
        if pre.search(raw) is None:
            return False
        shadow = self.shadow.of(raw)
        if shadow is None:
            return True  # the hit was no look-alike trigger
        # Removing them from the raw line gives every string in it its shadow view (JSON
        # escapes, which could spell them too, are triggers of their own). The second look
        # has no encoded-run trigger: it decodes the runs itself, as ``maybe_json`` does (a
        # plain search alone missed a base64 secret next to a U+200B: the walk finds it).
        plain = self._plain_prefilter(raw_json=True)
        if plain is None:
            return True
        return self._maybe_decoded(raw, 0, plain) or self._maybe_decoded(shadow, 0, plain)

    def maybe_decoded(self, text: bytes, depth: int = 0) -> bool:
        """Like ``maybe`` for decoded text (leaves joined by the walker's pre-check).

        With ``detect_encoding`` it mirrors ``Scanner.spans``: the loosened rules over
        ``text``, then the same check over what each candidate run decodes to, down to
        MAX_DECODE_DEPTH. So False still means ``spans`` finds nothing, in ``text`` or in any
        piece of it between newlines (runs never cross a newline: neither run pattern matches
        whitespace); at depth 0 also in its shadow view (the walk's, for strings).
        """
        if not self.rules:
            return False
        pre = self._decoded[0] if self._decoded else self._rules_prefilter
        return self._maybe_then_shadow(text, depth, pre, raw_json=False)

    def maybe_json(self, raw: bytes) -> bool:
        """``maybe_decoded`` for the strings of a JSON text, without decoding it: False only
        when no rule can match any string (or key, or long int) ``Walker.value`` would scan.

        ``raw`` must hold no backslash (orjson's output for a value none of whose strings
        needs an escape): then each string is in it byte for byte between quotes, which
        neither a loosened rule, a candidate, nor an encoded run contains, just as the
        newlines the walker joins the strings with; what lies between the strings (JSON
        punctuation, numbers, literals) can only add "maybe". The raw-line triggers
        (several text items, strings in an array, blobs) answer "maybe" where the walk does
        more than scan each string; encoded runs are decoded and checked as in
        ``maybe_decoded``, and the shadow view is taken of the whole text as in ``maybe``.
        """
        if not self.rules:
            return False
        if not self._json:  # a race compiles it twice at worst; both results are equal
            self._json.append(self._compile(self._re2, self._opts, raw_json=True, runs=False))
        return self._maybe_then_shadow(raw, 0, self._json[0], raw_json=True)

    def _maybe_then_shadow(
        self, text: bytes, depth: int, pre: Prefilter | None, *, raw_json: bool
    ) -> bool:
        """``pre`` over ``text`` and its decoded runs; on a hit at depth 0, whether it
        survives in the shadow view (look-alike triggers alone do not count)."""
        if pre is None:
            return True
        if not self._maybe_decoded(text, depth, pre):
            return False
        shadow = self.shadow.of(text) if depth == 0 else None
        if shadow is None:
            return True
        plain = self._plain_prefilter(raw_json=raw_json)
        if plain is None:
            return True
        return self._maybe_decoded(text, 0, plain) or self._maybe_decoded(shadow, 0, plain)

    def _maybe_decoded(self, text: bytes, depth: int, prefilter: Prefilter) -> bool:
        if prefilter.search(text) is not None:
            return True
        if self.encoding is None or depth >= MAX_DECODE_DEPTH:
            return False  # spans decodes nothing here either
        memo = self._run_memo
        for run in self.encoding.runs(text):
            key = (run, depth)
            found = memo.get(key)
            if found is None:
                # Decoded runs with the look-alike trigger: the walk scans no shadow view of
                # them, so the trigger only makes the answer "maybe" more often (sound).
                decoded = self.encoding.decode(run)
                pre = self._decoded[0] if self._decoded else self._rules_prefilter
                assert pre is not None
                found = False
                for d in decoded:
                    if self._maybe_decoded(d, depth + 1, pre):
                        found = True
                        break
                if len(run) <= MEMO_RUN_BYTES:
                    if len(memo) >= MEMO_RUNS:
                        memo.clear()
                    memo[key] = found
            if found:
                return True
        return False
