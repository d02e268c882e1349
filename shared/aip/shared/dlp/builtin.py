"""The built-in DLP rule set (``spec.dlp.builtin: true``; always on for ask and audit payloads).

RE2 patterns adapted from gitleaks (security.md §6.1), written to over-redact rather than miss:
there is deliberately no allowlist for documentation keys such as ``AKIA...EXAMPLE``. Card
numbers are a regex candidate confirmed in Python (length, issuer prefix, Luhn).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from aip.shared import slotclass
from aip.shared.slotclass import FrozenSlotted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# A validator gets the matched bytes and returns the secrets in them as (start, end) offsets
# into the match, in order and disjoint; empty when the candidate is not a secret after all.
Validator = Callable[[bytes], list[tuple[int, int]]]


class BuiltinRule(FrozenSlotted):
    """One built-in DLP detector (``spec.dlp.builtin``)."""

    __slots__ = ("candidates", "confirm", "name", "pattern", "prefilter", "validator")
    name: str
    pattern: str
    # A looser pattern for the raw-line prefilter (dlp_scan): it must match the raw JSON text
    # wherever ``pattern`` matches a decoded string. Needed where the pattern itself matches
    # characters that JSON escapes (newlines in a key block) or needs escape-sensitive context.
    prefilter: str | None
    validator: Validator | None
    # Where the loosened pattern fires on too much ordinary text (numbers for cards), the
    # pre-check instead finds ``candidates`` in the raw text and asks ``confirm`` about each:
    # every match of ``pattern`` in a decoded string must lie in a candidate that ``confirm``
    # accepts, so the pre-check stays sound. Candidates hold no character JSON escapes.
    candidates: str | None
    confirm: Callable[[bytes], bool] | None

    def __init__(
        self,
        name: str,
        pattern: str,
        prefilter: str | None = None,
        validator: Validator | None = None,
        candidates: str | None = None,
        confirm: Callable[[bytes], bool] | None = None,
    ) -> None:
        slotclass.init(self, "name", name)
        slotclass.init(self, "pattern", pattern)
        slotclass.init(self, "prefilter", prefilter)
        slotclass.init(self, "validator", validator)
        slotclass.init(self, "candidates", candidates)
        slotclass.init(self, "confirm", confirm)


CARD_MIN_DIGITS: Final = 13
CARD_MAX_DIGITS: Final = 19


def luhn_ok(digits: bytes) -> bool:
    """The mod-10 check of ISO/IEC 7812 over ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ch - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _issuer_ok(digits: bytes) -> bool:
    """Issuer prefixes of the major schemes (Visa, Mastercard, Amex, Discover, Diners, JCB,
    UnionPay, Maestro); rules out most Luhn-valid IDs and counters that merely look like PANs."""
    if digits[:1] == b"4":
        return True
    two = int(digits[:2])
    four = int(digits[:4])
    return (
        51 <= two <= 55
        or 2221 <= four <= 2720
        or two in (34, 35, 36, 37, 38, 39, 50, 62, 65)
        or 56 <= two <= 69
        or 300 <= int(digits[:3]) <= 305
    )


# Raw-text card candidates: maximal runs of digit groups (one " " or "-" between groups).
CARD_RUN: Final = r"[0-9](?:[ -]?[0-9]){12,}"
_DIGIT_GROUP: Final = re.compile(rb"[0-9]+")


def card_spans(run: bytes) -> list[tuple[int, int]]:
    """The cards in a run of digit groups: windows of 13-19 digits from a group start to a
    group end with a valid issuer prefix and Luhn sum, as (start, end) offsets.

    Left to right, the longest card at each group start, disjoint. A window never starts or
    ends inside a group (that would cut a run of digits in two).
    """
    groups = [m.span() for m in _DIGIT_GROUP.finditer(run)]
    out: list[tuple[int, int]] = []
    i, n = 0, len(groups)
    while i < n:
        start = groups[i][0]
        if run[start] not in b"23456":  # every issuer prefix starts with one of these
            i += 1
            continue
        ends: list[int] = []
        count = 0
        for j in range(i, n):
            count += groups[j][1] - groups[j][0]
            if count > CARD_MAX_DIGITS:
                break
            if count >= CARD_MIN_DIGITS:
                ends.append(j)
        found = None
        if ends and _issuer_ok(run[start : groups[ends[-1]][1]].translate(None, b" -")):
            for j in reversed(ends):
                if luhn_ok(run[start : groups[j][1]].translate(None, b" -")):
                    found = j
                    break
        if found is None:
            i += 1
            continue
        out.append((start, groups[found][1]))
        i = found + 1
    return out


def card_validator(match: bytes) -> list[tuple[int, int]]:
    """The cards in a candidate of the card rule, which is a whole run of digit groups.

    A run can hold a card after other digits ("2 4111 1111 1111 1111"), before them ("4111 1111
    1111 1111 7") or several cards; every window aligned to digit groups is tried.
    """
    return card_spans(match)


def has_card(run: bytes) -> bool:
    return bool(card_spans(run))


_PK_LABEL: Final = r"[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"
# The key body is bounded by what a key body is made of, never "to the end of the text": a
# redaction hides exactly the secret, so a command after a key (or after a lone BEGIN line)
# stays visible in the dialog (issue 11, finding 4). A line break is real or JSON-escaped
# (``\n`` written out, as in a flattened PEM); an RFC 1421/4880 header is "Name: value".
_PK_NL: Final = r"[ \t]*(?:\r?\n|(?:\\r)?\\n)[ \t]*"
_PK_SEP: Final = rf"(?:{_PK_NL})+|[ \t]+"
_PK_HEADER: Final = rf"(?:{_PK_NL})+[A-Za-z-]{{1,32}}:[ \t]*[A-Za-z0-9 ,.+/=:_@-]{{1,200}}"
_PK_B64: Final = r"[A-Za-z0-9+/=]"

BUILTIN_RULES: Final[tuple[BuiltinRule, ...]] = (
    # Access key ids; [A-Z0-9] instead of gitleaks' base32 [A-Z2-7] so made-up keys match too.
    BuiltinRule("aws-access-key", r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    BuiltinRule(
        "aws-secret-key",
        r"(?i:\baws_?secret(?:_?access)?_?key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}",
        prefilter=r"(?i)aws_?secret",
    ),
    BuiltinRule("github-token", r"\b(?:ghp|gho|ghu|ghs|ghr)_[0-9A-Za-z]{36}\b"),
    BuiltinRule("github-fine-grained-pat", r"\bgithub_pat_[0-9A-Za-z_]{60,}"),
    BuiltinRule(
        "slack-token",
        r"\bxox[abeoprs]-(?:[0-9]+-)+[0-9A-Za-z][0-9A-Za-z-]{7,}|\bxapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+",
    ),
    BuiltinRule(
        "slack-webhook",
        r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,}",
    ),
    # A whole key block: BEGIN, headers, base64 words (separated by line breaks, or by
    # spaces in a flattened key), END. Without a matching END (truncated output) the BEGIN
    # line, its headers and the base64 lines of 16+ characters that follow (a real body line
    # has 64 or 70); key lines ending in an END line without their BEGIN (the BEGIN was in an
    # earlier message) from the first base64 line.
    BuiltinRule(
        "private-key",
        rf"(?i:-----BEGIN{_PK_LABEL})"
        rf"(?:(?:{_PK_HEADER})*(?:(?:{_PK_SEP}){_PK_B64}+)*(?:{_PK_SEP})(?i:-----END{_PK_LABEL})"
        rf"|(?:{_PK_HEADER})*(?:(?:{_PK_NL})+{_PK_B64}{{16,}})*)"
        rf"|(?:{_PK_B64}{{16,}}\r?\n)+(?i:-----END{_PK_LABEL})",
        prefilter=r"(?i)PRIVATE KEY",
    ),
    # Header and payload are base64url JSON objects: both start with "eyJ" ('{"').
    BuiltinRule("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    BuiltinRule("stripe-key", r"\b(?:sk|rk)_(?:live|test|prod)_[0-9A-Za-z]{10,99}\b"),
    BuiltinRule("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}"),
    # Anthropic before OpenAI: "sk-ant-..." also fits the OpenAI shape; the first rule names it.
    BuiltinRule("anthropic-key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    BuiltinRule(
        "openai-key", r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|\bsk-[A-Za-z0-9]{32,}\b"
    ),
    BuiltinRule(
        "card-number",
        # A whole run of digit groups; the validator finds the cards in it.
        r"\b[2-6](?:[ -]?[0-9]){12,}\b",
        validator=card_validator,
        candidates=CARD_RUN,
        confirm=has_card,
    ),
)
