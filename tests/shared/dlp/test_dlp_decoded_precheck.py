"""The decoded pre-check with ``detect_encoding``: ``Scanner.maybe_decoded`` decodes candidate
runs itself instead of answering "maybe" for every 16-character run (paths, identifiers), and
must still never say "clean" where ``spans`` or the full walk finds something."""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aip.shared.dlp.redactor import Redactor
from aip.shared.dlp.scan import Scanner
from aip.shared.policy.model import DlpConfig, DlpPattern
from aip.shared.policy.regexes import compile_pattern

AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GHP = "ghp_" + "aB3dE5gH7jK9mN1pQ2rS4tU6vW8xY0zA1234"


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _encodings(secret: str) -> list[str]:
    """The secret as the encoded-run detector decodes it, one and two levels deep."""
    once = [
        _b64(secret),
        base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
        binascii.hexlify(secret.encode()).decode(),
        "0x" + binascii.hexlify(secret.encode()).decode().upper(),
        quote(secret, safe=""),
        "".join(f"%{b:02X}" for b in secret.encode()),
    ]
    return once + [_b64(x) for x in once[:3]] + [quote(_b64(secret), safe="")]


ENCODED = _encodings(AWS) + _encodings(GHP) + _encodings("password: hunter2222")
NOISE = [
    "/home/user/project/src/main.py",
    "src/aip/shared/dlp_scan.py",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef",
    "0123456789abcdef0123456789abcdef01",
    "deadbeef" * 5,
    "%20",
    "%zz",
    "%",
    "a+b/c_d-e",
    "==",
    "=",
    "/",
    " ",
    "\n",
    ".",
    "\u200b",
    "\uff21",
    AWS[:10],
    _b64(AWS)[:12],
    _b64(AWS)[12:],
]
texts = st.lists(
    st.one_of(st.sampled_from(ENCODED), st.sampled_from(NOISE), st.text(max_size=6)), max_size=8
).map("".join)


def _policy_cfg() -> DlpConfig:
    pats = [
        ("anchored", r"^SECRET_[A-Z]+$"),
        ("password", r"password:\s+\S{6,}"),
        ("caps", r"[A-Z]{12,}"),
    ]
    return DlpConfig(
        enabled=True,
        patterns=tuple(DlpPattern(n, p, compile_pattern(p)) for n, p in pats),
        builtin=True,
        detect_encoding=True,
    )


REDACTORS = [
    Redactor.builtin_only(),
    Redactor.from_config(DlpConfig(), for_display=True),
    Redactor.from_config(_policy_cfg()),
]
redactors = st.sampled_from(REDACTORS)
QUICK = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.one_of(st.none(), st.integers(), texts),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@QUICK
@given(redactors, texts)
def test_decoded_precheck_never_misses_a_span(red: Redactor, s: str) -> None:
    scanner = red._scanner
    raw = s.encode("utf-8", "surrogatepass")
    if scanner.spans(raw):
        assert scanner.maybe_decoded(raw), s


@QUICK
@given(redactors, st.lists(texts, min_size=1, max_size=5))
def test_decoded_precheck_over_joined_pieces_never_misses(red: Redactor, parts: list[str]) -> None:
    """The walker joins every leaf with newlines: a hit in any one piece shows in the join."""
    scanner = red._scanner
    pieces = [p.encode("utf-8", "surrogatepass") for p in parts]
    if any(scanner.spans(p) for p in pieces):
        assert scanner.maybe_decoded(b"\n".join(pieces)), parts


@QUICK
@given(redactors, json_values)
def test_walk_shortcut_agrees_with_the_walk_on_encoded_values(red: Redactor, value: Any) -> None:
    walker = red._walker
    counts: Counter[str] = Counter()
    walker.value(value, counts)
    if counts:
        assert not walker.clean(value, top=False), value
        assert red.redact_value(value)[1] == counts


def test_path_arguments_are_clean_without_the_walk() -> None:
    red = Redactor.from_config(DlpConfig(), for_display=True)
    args = {"path": "/home/user/project/src/main.py", "encoding": "utf-8"}
    assert red._walker.clean(args, top=False)
    assert red.redact_value(args) == (args, Counter())


def test_secret_encoded_inside_a_url_argument_is_still_redacted() -> None:
    red = Redactor.from_config(DlpConfig(), for_display=True)
    for enc in _encodings(AWS):
        args = {"url": f"https://example.org/get?key={enc}&x=1", "path": "/srv/data/file.txt"}
        assert not red._walker.clean(args, top=False), enc
        new, counts = red.redact_value(args)
        assert counts == Counter({"aws-access-key": 1}), (enc, new)
        assert enc not in new["url"]


def test_precheck_and_walk_agree_on_a_run_glued_to_a_path() -> None:
    """Known limit of the scan itself (not of the pre-check): "/tmp/" + base64 is one run
    that decodes misaligned, so neither finds the key; the pre-check must agree."""
    red = Redactor.from_config(DlpConfig(), for_display=True)
    args = {"path": f"/tmp/{_b64(AWS)}/x.txt"}
    assert red.redact_value(args)[1] == Counter()
    assert red._walker.clean(args, top=False)


def test_two_levels_deep_is_found_three_is_not_required() -> None:
    """The pre-check goes exactly as deep as the scan (MAX_DECODE_DEPTH)."""
    red = Redactor.builtin_only()
    two = _b64(_b64(AWS))
    assert red._scanner.maybe_decoded(two.encode())
    assert red.redact_text(two)[1]


_TWINS: dict[int, Scanner] = {}


def _cold_twin(red: Redactor) -> Scanner:
    """A scanner of ``red``'s rules that remembers nothing: built once per redactor (an RE2
    set compile per part made this one of the suite's slowest tests), its run memo emptied
    on every call. The memo is the only answer a used scanner keeps; what it compiles
    lazily is the same whenever it is compiled."""
    if id(red) not in _TWINS:
        _TWINS[id(red)] = Scanner(red._scanner.rules, detect_encoding=True)
    twin = _TWINS[id(red)]
    twin._precheck._run_memo.clear()
    return twin


@QUICK
@given(redactors, st.lists(texts, min_size=1, max_size=6))
def test_remembered_runs_give_the_same_answers(red: Redactor, parts: list[str]) -> None:
    """The per-run memo is exact: answers with it warm equal answers from a cold scanner."""
    warm = red._scanner
    for part in parts:
        raw = part.encode("utf-8", "surrogatepass")
        cold = _cold_twin(red)
        assert warm.maybe_decoded(raw) == cold.maybe_decoded(raw), part
        assert warm.maybe_decoded(raw) == cold.maybe_decoded(raw), part  # both warm now


def test_run_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from aip.shared.dlp import precheck as dlp_precheck

    monkeypatch.setattr(dlp_precheck, "MEMO_RUNS", 8)
    scanner = Redactor.builtin_only()._scanner._precheck
    for i in range(50):
        assert not scanner.maybe_decoded(f"/srv/data/directory{i:04d}/file.txt".encode())
        assert len(scanner._run_memo) <= 8
    long_run = b"A" * 300 + b"x"
    scanner.maybe_decoded(long_run)
    assert all(len(run) <= dlp_precheck.MEMO_RUN_BYTES for run, _ in scanner._run_memo)
    secret_run = _b64(AWS).encode()
    assert scanner.maybe_decoded(b"key=" + secret_run)
    assert scanner.maybe_decoded(b"other=" + secret_run)  # remembered as "maybe"


# --- the JSON-text pre-check (Walker.clean of a value: PreCheck.maybe_json) ---------------

SLACK_CARD = "xoxp-1234567890-12\xad34567890-123456\xad7890-abcdef0123456789"
json_texts = st.lists(
    st.one_of(
        st.sampled_from(ENCODED),
        st.sampled_from(NOISE),
        st.sampled_from([SLACK_CARD, "4111 1111 1111 1111", "A\u034fKIA" + AWS[4:], '"', "%"]),
        st.text(max_size=6),
    ),
    max_size=6,
).map("".join)
json_like = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([4111111111111111, -4111111111111111, 10**12, 1.5e16]),
        json_texts,
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_texts, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(redactors, json_like)
def test_json_precheck_never_misses_what_the_walk_finds(red: Redactor, value: Any) -> None:
    """maybe_json answers for JSON text without backslashes; whatever the walk redacts, it
    (and so Walker.clean) must call "maybe", and redact_value must equal the walk."""
    import orjson

    walker = red._walker
    counts: Counter[str] = Counter()
    walked = walker.value(value, counts)
    try:
        raw = orjson.dumps(value)
    except TypeError:
        raw = b"\\"
    if counts:
        if b"\\" not in raw:
            assert red._scanner.maybe_json(raw), value
        assert not walker.clean(value, top=False), value
    assert red.redact_value(value) == (walked, counts)


def test_json_precheck_sees_shadow_views_and_cards() -> None:
    import orjson

    red = Redactor.from_config(DlpConfig(), for_display=True)
    for value in [
        {"token": SLACK_CARD},
        {"key": "A\u034fKIA" + AWS[4:]},
        {"n": 4111111111111111},
        {"card": "4111 1111 1111 1111"},
        {"url": f"https://x.org/?k={_b64(AWS)}"},
        {"nested": {"list": [1, {"k": AWS}]}},
    ]:
        raw = orjson.dumps(value)
        assert b"\\" not in raw
        assert red._scanner.maybe_json(raw), value
        assert red.redact_value(value)[1], value
    clean = {
        "path": "/home/user/project/src/main.py",
        "n": 12,
        "ok": True,
        "emoji": "ok\u2764\ufe0f",
    }
    assert not red._scanner.maybe_json(orjson.dumps(clean))
    assert red.redact_value(clean) == (clean, Counter())
