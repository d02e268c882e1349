"""Hypothesis properties: redaction output holds nothing the redactor would still flag (so it
is idempotent), and the raw-line prefilter never says "clean" for a message with a secret."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aip.shared.dlp.redactor import Redactor
from aip.shared.policy.model import DlpConfig, DlpPattern
from aip.shared.policy.regexes import compile_pattern

AWS = "AKIA" + "IOSFODNN7EXAMPLE"
FRAGMENTS = [
    AWS,
    "AKIA",
    "IOSFODNN",
    "7EXAMPLE",
    "ghp_",
    "aB3dE5gH7jK9mN1pQ2rS4tU6vW8xY0zA1234",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----",
    "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn",
    "4111",
    " 1111",
    "-1111",
    "[REDACTED:",
    "[REDACTED:aws-access-key]",
    "aws-access-key",
    "]",
    "%41",
    "%4B",
    base64.b64encode(AWS.encode()).decode(),
    AWS.encode().hex(),
    "sk-",
    "sk_live_",
    "xoxb-1234567890-",
    "eyJhbGciOiJIUzI1NiJ9",
    ".",
    "SECRET_",
    "ABC",
    "password: ",
    "hunter22",
    "\n",
    " ",
    '"',
    "\\",
    "/",
    "\u00e9",
    "\u2028",
    "bob@example.org",
    "\u200b",
    "\uff21\uff2b",
    "\u00ad",
    "@",
    ".io",
]
texts = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=12).map(
    "".join
)


def _cfg(detect: bool) -> DlpConfig:
    pats = [
        ("anchored", r"^SECRET_[A-Z]+$"),
        ("secret", r"\bSECRET_[A-Z]{3}\b"),
        ("caps", r"[A-Z]{6,}"),
        ("password", r"password:\s+\S{6,}"),
        ("quote", r"\"[a-z]+\""),
    ]
    return DlpConfig(
        enabled=True,
        patterns=tuple(DlpPattern(n, p, compile_pattern(p)) for n, p in pats),
        builtin=True,
        detect_encoding=detect,
    )


def _safe_cfg() -> DlpConfig:
    """Only escape-safe policy patterns: the prefilter runs on raw lines without decoding."""
    pats = [
        ("anchored", r"^SECRET_[A-Z]+$"),
        ("secret", r"\bSECRET_[A-Z]{3}\b"),
        ("caps", r"[A-Z]{6,}"),
        ("mail", r"[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}"),
    ]
    return DlpConfig(
        enabled=True,
        patterns=tuple(DlpPattern(n, p, compile_pattern(p)) for n, p in pats),
        builtin=True,
    )


REDACTORS = [
    Redactor.from_config(_safe_cfg()),
    Redactor.builtin_only(),
    Redactor.from_config(DlpConfig(enabled=True, builtin=True)),
    Redactor.from_config(_cfg(False)),
    Redactor.from_config(_cfg(True)),
]
redactors = st.sampled_from(REDACTORS)
QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@QUICK
@given(redactors, texts)
def test_output_holds_nothing_flaggable_and_is_idempotent(red: Redactor, s: str) -> None:
    once, _ = red.redact_text(s)
    again, counts = red.redact_text(once)
    assert not counts, (s, once, again)
    assert again == once


def _message(parts: list[str], shape: int) -> dict[str, Any]:
    if shape == 0:
        result: dict[str, Any] = {"content": [{"type": "text", "text": p} for p in parts]}
    elif shape == 1:
        result = {"content": [{"type": "text", "text": "".join(parts)}]}
    elif shape == 2:
        result = {"content": [], "structuredContent": {"lines": parts, "n": len(parts)}}
    elif shape == 3:
        result = {"content": [], "structuredContent": {p: i for i, p in enumerate(parts)}}
    elif shape == 4:  # strings and text objects mixed in one array
        mixed = [p if i % 2 else {"text": p} for i, p in enumerate(parts)]
        result = {"content": [], "structuredContent": {"items": mixed}}
    elif shape == 5:  # text items with other items between them
        others: list[Any] = [5, {"type": "image", "data": "eA==", "mimeType": "image/png"}, None]
        mixed = [x for i, p in enumerate(parts) for x in (p, others[i % 3])]
        result = {"content": [], "structuredContent": {"items": mixed}}
    else:  # embedded resources with text
        res = [{"type": "resource", "resource": {"uri": "u", "text": p}} for p in parts]
        result = {"content": res}
    return {"jsonrpc": "2.0", "id": 1, "result": result}


@QUICK
@given(redactors, st.lists(texts, min_size=1, max_size=4), st.integers(0, 6))
def test_message_redaction_is_idempotent_and_keeps_the_envelope(
    red: Redactor, parts: list[str], shape: int
) -> None:
    msg = _message(parts, shape)
    once, _ = red.redact_message(msg)
    again, counts = red.redact_message(once)
    assert not counts
    assert again == once
    assert (once["jsonrpc"], once["id"]) == ("2.0", 1)
    orjson.loads(orjson.dumps(once))


def _serializations(msg: dict[str, Any]) -> list[bytes]:
    """The same message as different servers write it (escapes differ, content does not)."""
    return [
        orjson.dumps(msg),
        json.dumps(msg).encode(),  # ensure_ascii: non-ASCII as \\uXXXX
        json.dumps(msg, ensure_ascii=False, indent=1).encode(),
        json.dumps(msg, ensure_ascii=False).replace("/", "\\/").encode(),
    ]


@QUICK
@given(redactors, st.lists(texts, min_size=1, max_size=4), st.integers(0, 6))
def test_prefilter_never_misses(red: Redactor, parts: list[str], shape: int) -> None:
    msg = _message(parts, shape)
    _, counts = red.redact_message(msg)
    if counts:
        for raw in _serializations(msg):
            assert red.might_contain_secret(raw), raw
            out = red.redact_line(raw)
            assert out.counts == counts


_KEYS = st.one_of(
    st.sampled_from(["type", "text", "data", "blob", "mimeType", "resource", "image", AWS]),
    texts,
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
    st.sampled_from(
        [
            "image",
            "audio",
            "text/plain",
            "image/png",
            "image/svg+xml",
            "QUtJQQ==",
            base64.b64encode(AWS.encode()).decode(),
            "4111111111111111",
        ]
    ),
)
json_values = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)


@QUICK
@given(redactors, json_values)
def test_any_json_value_is_walked_safely_and_idempotently(red: Redactor, value: Any) -> None:
    once, _ = red.redact_value(value)
    orjson.dumps(once)  # still JSON
    again, counts = red.redact_value(once)
    assert not counts, (value, once, again)
    assert again == once


@QUICK
@given(redactors, json_values)
def test_prefilter_never_misses_in_any_result(red: Redactor, value: Any) -> None:
    msg = {"jsonrpc": "2.0", "id": 1, "result": {"structuredContent": value}}
    _, counts = red.redact_message(msg)
    if counts:
        for raw in _serializations(msg):
            assert red.might_contain_secret(raw), raw


@QUICK
@given(redactors, json_values, st.lists(texts, min_size=1, max_size=4), st.integers(0, 6))
def test_walk_shortcut_never_skips_a_redaction(
    red: Redactor, value: Any, parts: list[str], shape: int
) -> None:
    """``Walker.clean`` (one pass over the joined strings) agrees with the full walk."""
    from collections import Counter

    walker = red._walker
    for msg, top in ((_message(parts, shape), True), (value, False)):
        counts: Counter[str] = Counter()
        if top:
            walker.message(msg, counts)
        else:
            walker.value(msg, counts)
        if counts:
            assert not walker.clean(msg, top=top), msg


# Runs of numbers: card candidates for the pre-check, which validates them on the raw line
# instead of sending every run of numbers to the walk (issue 5).
_CARD_PIECES = [
    "4111",
    "1111",
    "5500",
    "0000",
    "0004",
    "62139",
    "18477",
    "6665",
    "3054",
    "80545",
    "8818",
    "58703",
    "2",
    "7",
    "4111111111111111",
    "378282246310005",
]
_SEPARATORS = [" ", "-", "  ", "", "\n", "\t", "x", '"', "\\", "\u00a0", "\u200b", "\uff14"]
number_runs = st.lists(
    st.tuples(st.sampled_from(_CARD_PIECES), st.sampled_from(_SEPARATORS)).map("".join),
    min_size=1,
    max_size=10,
).map("".join)


@QUICK
@given(redactors, st.lists(number_runs, min_size=1, max_size=3), st.integers(0, 6))
def test_prefilter_never_misses_a_card_in_number_runs(
    red: Redactor, parts: list[str], shape: int
) -> None:
    msg = _message(parts, shape)
    _, counts = red.redact_message(msg)
    if counts:
        for raw in _serializations(msg):
            assert red.might_contain_secret(raw), raw
            assert red.redact_line(raw).counts == counts


@QUICK
@given(redactors, st.lists(number_runs, min_size=1, max_size=3))
def test_walk_shortcut_never_skips_a_card_in_number_runs(red: Redactor, parts: list[str]) -> None:
    from collections import Counter

    counts: Counter[str] = Counter()
    red._walker.value(parts, counts)
    if counts:
        assert not red._walker.clean(parts, top=False), parts


def _text_result(text: str) -> bytes:
    msg = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}]}}
    return orjson.dumps(msg)


def test_number_runs_without_a_card_take_the_one_pass_path() -> None:
    """Runs of numbers that are no card (Luhn, issuer, length) do not send the line to the
    walk; a line with a card or with a plain trigger after a number run still does."""
    red = Redactor.from_config(DlpConfig(enabled=True, builtin=True))
    runs = "word 3054 80545 8818 58703 and 61406 823 78879 then 4321 54479 15026 end " * 50
    assert not red.might_contain_secret(_text_result(runs))
    assert red.might_contain_secret(_text_result(runs + " 4111 1111 1111 1111"))
    assert red.might_contain_secret(_text_result(runs + " " + AWS))
    assert red.might_contain_secret(_text_result("\n4111111111111111"))
    assert not red.might_contain_secret(_text_result("\n4111111111111112"))


def test_one_pass_pre_check_only_where_nothing_plain_starts_inside_a_number_run() -> None:
    """Built-ins alone: one pass resumed after each candidate. Policy patterns or encoded-run
    detection may match from inside a run of digits: the plain part is searched on its own."""
    one_pass = {id(r): r._scanner._precheck._prefilter._one_pass for r in REDACTORS}
    assert one_pass[id(REDACTORS[2])] is True  # built-ins only
    assert one_pass[id(REDACTORS[1])] is False  # builtin_only() detects encoded runs
    assert one_pass[id(REDACTORS[0])] is False  # policy patterns
    digits_pattern = DlpConfig(
        enabled=True,
        patterns=(DlpPattern("six", r"\d{6}x", compile_pattern(r"\d{6}x")),),
        builtin=True,
    )
    red = Redactor.from_config(digits_pattern)
    raw = _text_result("3054 80545 8818 58703 123456x")
    assert red.might_contain_secret(raw)
    assert red.redact_line(raw).counts == {"six": 1}
