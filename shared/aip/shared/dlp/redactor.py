"""DLP (DESIGN §8): secrets in server messages, tool arguments and stderr become markers.

A message over ``max_scan_size`` bytes is never scanned and never relayed (``LineResult.oversize``;
the proxy answers with an error instead); what cannot be scanned raises ``DlpError`` and is
blocked. Never does anything pass unscanned. What is scanned and how: ``Redactor``.
"""

from __future__ import annotations

from collections import Counter

import orjson

from aip.shared import logs, slotclass
from aip.shared.dlp.builtin import BUILTIN_RULES
from aip.shared.dlp.loose import escape_safe
from aip.shared.dlp.scan import DlpError, Rule, Scanner
from aip.shared.dlp.walk import ENVELOPE_KEYS, Walker
from aip.shared.policy.model import DlpConfig
from aip.shared.slotclass import FrozenSlotted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

log = logs.get(__name__)

DEFAULT_MAX_SCAN_BYTES: Final = DlpConfig().max_scan_size


def _builtin_rules() -> list[Rule]:
    return [
        Rule(
            r.name,
            r.pattern,
            r.prefilter,
            r.validator,
            escape_safe=True,
            candidates=r.candidates,
            confirm=r.confirm,
        )
        for r in BUILTIN_RULES
    ]


class LineResult(FrozenSlotted):
    """What to do with one message line from the server (see ``Redactor.redact_line``)."""

    __slots__ = ("counts", "line", "message", "oversize")
    line: bytes | None  # the bytes to forward (the input itself if clean); None: do not forward
    message: Any  # the (redacted) message when it had to be decoded, else the caller's object
    counts: Counter[str]
    oversize: bool  # over max_scan_size: not scanned, so not forwarded

    def __init__(
        self,
        line: bytes | None,
        message: Any,
        counts: Counter[str] | None = None,  # None: a new Counter()
        oversize: bool = False,
    ) -> None:
        slotclass.init(self, "line", line)
        slotclass.init(self, "message", message)
        slotclass.init(self, "counts", Counter() if counts is None else counts)
        slotclass.init(self, "oversize", oversize)


class Redactor:
    """A compiled rule set with the operations the proxy and the approver need.

    Immutable after construction; build it once per policy and share it.

    Each match becomes ``[REDACTED:<rule name>]``; policy patterns come first in list order, then
    the built-ins. Rules this module decides (security.md §6):
    - Oversize: a message longer than ``max_scan_size`` bytes is not scanned and must not be
      forwarded (``LineResult.oversize``); the proxy answers a request with an error instead.
    - Media: base64 ``data`` of image/audio items and image/audio/video blobs is scanned with the
      built-in rules only (on the base64 text; they never fire on random base64) and on a hit the
      whole field becomes the base64 of the markers. Other blobs and text-typed media (SVG) are
      decoded, redacted and re-encoded; a binary blob with a hit becomes the markers. Data that
      is not base64 is an ordinary string.
    - Split secrets: matches across adjacent text items of one array (content items, resource
      text, plain strings; joined with "" and "\\n") are redacted in every item they touch.
    - Object keys are redacted like values; the top-level ``jsonrpc``, ``id`` and ``method`` never.
    - Long integers (13+ digits) are scanned as digits; on a hit the number becomes the marker.
    - Anything that cannot be scanned (not JSON, nested deeper than Python's recursion limit
      allows) raises ``DlpError``: the caller blocks the message, never relays it unscanned.
    - Look-alikes: a string holding an invisible character (Unicode Default_Ignorable_Code_Point
      or category Cf: zero-width, bidi controls, soft hyphen, variation selectors, tags, ...) or
      fullwidth ASCII is also scanned in a "shadow" view (those removed / folded; see
      ``aip.shared.dlp.shadow``); when that view holds a match, the string (or stderr line) is
      replaced by its redacted shadow view.
    Not covered: secrets split across messages or object fields, inside pictures, compressed or
    encrypted, reversed, or written with homoglyphs from other scripts (a Cyrillic "A" in "AKIA").
    """

    def __init__(
        self,
        rules: list[Rule],
        *,
        detect_encoding: bool = False,
        max_scan_size: int = DEFAULT_MAX_SCAN_BYTES,
    ) -> None:
        self._scanner = Scanner(rules, detect_encoding=detect_encoding)
        builtin_names = {r.name for r in BUILTIN_RULES}
        media_rules = [r for r in rules if r.escape_safe and r.name in builtin_names]
        media = None
        if media_rules:
            media = Scanner(media_rules, detect_encoding=False)
        self._walker = Walker(self._scanner, media)
        self.max_scan_size = max_scan_size

    @classmethod
    def from_config(cls, cfg: DlpConfig, *, for_display: bool = False) -> Redactor:
        """Policy patterns first, then the built-ins when ``cfg.builtin`` or ``for_display``.

        ``for_display`` is the redactor for ask and audit payloads: always the built-ins, and
        always the decoding of encoded runs (those payloads are small).
        """
        rules = [Rule(p.name, p.pattern, escape_safe=escape_safe(p.pattern)) for p in cfg.patterns]
        if cfg.builtin or for_display:
            rules += _builtin_rules()
        return cls(
            rules,
            detect_encoding=cfg.detect_encoding or for_display,
            max_scan_size=cfg.max_scan_size,
        )

    @classmethod
    def builtin_only(cls) -> Redactor:
        """The approver's second pass over what proxies send it."""
        return cls(_builtin_rules(), detect_encoding=True)

    @property
    def rule_names(self) -> tuple[str, ...]:
        return self._scanner.names

    # -- raw lines -------------------------------------------------------------------------

    def might_contain_secret(self, raw: bytes) -> bool:
        """One RE2 pass over a JSON text: False means no string in it can hold a match.

        True also for anything the decoded walk must look at: JSON escapes that could hide
        a secret (``\\u0041KIA``), several text items, string arrays, blobs, and (with
        ``detect_encoding``) candidate encoded runs; and for lines over ``max_scan_size``.
        """
        if len(raw) > self.max_scan_size:
            return True
        return self._scanner.maybe(raw)

    def scan_bytes(self, raw: bytes) -> bool:
        """The fast path under the name the task used: ``might_contain_secret``."""
        return self.might_contain_secret(raw)

    def redact_line(self, raw: bytes, message: Any = None) -> LineResult:
        """The child -> host path: fast pass, then decode + walk + re-encode only on a hit.

        ``raw`` is one JSON text, with or without its newline (a redacted line keeps it);
        ``message`` its decoded form if the caller has it already. Raises ``DlpError`` if
        the line is not JSON, is nested too deeply, or the rebuilt message would not be the
        same JSON-RPC message; the caller must then not forward it.
        """
        if len(raw) > self.max_scan_size:
            log.warning("message of %d bytes is over max_scan_size; not forwarded", len(raw))
            return LineResult(None, message, Counter(), oversize=True)
        if not self._scanner.maybe(raw):
            return LineResult(raw, message)
        if message is None:
            try:
                message = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise DlpError(f"not JSON: {exc}") from None
        new, counts = self.redact_message(message)  # DlpError when nested too deeply
        if not counts:
            return LineResult(raw, message)
        _check_envelope(message, new)
        eol = b"\n" if raw.endswith(b"\n") else b""
        return LineResult(orjson.dumps(new) + eol, new, counts)

    # -- decoded values --------------------------------------------------------------------

    def redact_message(self, obj: Any) -> tuple[Any, Counter[str]]:
        """Redact every string leaf and key of a server message; the envelope stays as is."""
        counts: Counter[str] = Counter()
        try:
            if self._walker.clean(obj, top=True):
                return obj, counts
            return self._walker.message(obj, counts), counts
        except RecursionError:
            raise DlpError("message nested too deeply to scan") from None

    def scan_arguments(self, args: Any) -> tuple[Any, Counter[str]]:
        """Redact tool-call arguments (keys and values); counts empty means clean."""
        return self.redact_value(args)

    def redact_value(self, value: Any) -> tuple[Any, Counter[str]]:
        """Redact any decoded JSON value (ask and audit payloads, arguments)."""
        counts: Counter[str] = Counter()
        try:
            if self._walker.clean(value, top=False):
                return value, counts
            return self._walker.value(value, counts), counts
        except RecursionError:
            raise DlpError("value nested too deeply to scan") from None

    def clean_value(self, value: Any) -> bool:
        """True when ``redact_value(value)`` would find nothing and return ``value`` itself:
        its pre-check alone, without the counter (the per-call record's display scan)."""
        try:
            return self._walker.clean(value, top=False)
        except RecursionError:
            raise DlpError("value nested too deeply to scan") from None

    def redact_text(self, s: str) -> tuple[str, Counter[str]]:
        counts: Counter[str] = Counter()
        return self._walker.text(s, counts), counts

    def redact_bytes(self, b: bytes) -> tuple[bytes, Counter[str]]:
        """Redact raw text (a stderr line); like a string leaf, when its shadow view holds a
        match, the text is replaced by its redacted shadow view."""
        return self._scanner.redact_views(b)


def summarize(counts: Counter[str]) -> list[str]:
    """Rules that fired and how often, for the audit record's ``dlp`` list: ``["jwt:2"]``.

    Rule names never contain ":" (the loader's name rule; built-in names are fixed).
    """
    if not counts:
        return []
    return [f"{name}:{n}" for name, n in sorted(counts.items())]


def _check_envelope(old: Any, new: Any) -> None:
    """The redacted message must still be the same JSON-RPC message (security.md §6.3)."""
    pairs = list(zip(old, new, strict=True)) if isinstance(old, list) else [(old, new)]
    for a, b in pairs:
        if isinstance(a, dict):
            if not isinstance(b, dict) or a.keys() != b.keys():
                raise DlpError("redaction changed the message structure")
            if any(a.get(k) != b.get(k) for k in ENVELOPE_KEYS):
                raise DlpError("redaction changed the JSON-RPC envelope")
