"""Loosened patterns for the raw-line prefilter; its escape and structure triggers."""

from __future__ import annotations

import orjson
import pytest
import re2

from aip.shared.dlp.loose import escape_safe, loosen
from aip.shared.dlp.redactor import Redactor
from aip.shared.policy.model import DlpConfig, DlpPattern
from aip.shared.policy.regexes import compile_pattern


@pytest.mark.parametrize(
    ("pattern", "loose"),
    [
        (r"^abc$", "abc"),
        (r"\bAKIA[A-Z0-9]{16}\b", "AKIA[A-Z0-9]{16}"),
        (r"\Afoo\z", "foo"),
        (r"a\Bb", "ab"),
        (r"[\^$]x", r"[\^$]x"),  # inside a class: literal characters, kept
        (r"[]^]x", r"[]^]x"),
        (r"[^]a]\b", r"[^]a]"),
        (r"[[:alpha:]^]$", r"[[:alpha:]^]"),
        (r"\Q^$\b\E^", r"\Q^$\b\E"),
        (r"\p{^Greek}^", r"\p{^Greek}"),
        (r"\x{5E}\$\\b", r"\x{5E}\$\\b"),  # escaped backslash before b: not a boundary
        (r"(?m)^key=\S+$", r"(?m)key=\S+"),
    ],
)
def test_loosen(pattern: str, loose: str) -> None:
    assert loosen(pattern) == loose


@pytest.mark.parametrize("pattern", [r"^SECRET$", r"\bab\b", r"(?m)^x\d+$", r"[\^]y\b"])
def test_loose_pattern_matches_wherever_the_original_does(pattern: str) -> None:
    loose = re2.compile(loosen(pattern))
    for text in ["SECRET", "ab", "x12", "^y", "zz SECRET zz", '"ab"', "\\nx12"]:
        if re2.search(pattern, text):
            assert loose.search(f'"{text}"') or loose.search(text)


def _policy_redactor(*patterns: str) -> Redactor:
    pats = tuple(DlpPattern(f"p{i}", p, compile_pattern(p)) for i, p in enumerate(patterns))
    return Redactor.from_config(DlpConfig(enabled=True, patterns=pats))


def test_policy_pattern_that_cannot_be_loosened_makes_every_line_maybe() -> None:
    red = _policy_redactor(r"\b+")  # drops to "+", which does not compile
    assert red.might_contain_secret(b'{"jsonrpc":"2.0","id":1,"result":{}}')


def test_unsafe_policy_patterns_treat_any_backslash_as_maybe() -> None:
    red = _policy_redactor(r"password:\s+\S+")
    with_newline = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"t": "password:\nxyz"}})
    assert red.might_contain_secret(with_newline)
    assert red.redact_line(with_newline).counts == {"p0": 1}
    plain = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"t": "nothing here"}})
    assert not red.might_contain_secret(plain)


@pytest.mark.parametrize(
    ("msg", "maybe"),
    [
        ({"result": {"content": [{"type": "text", "text": "a"}]}}, False),
        (
            {"result": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}},
            True,
        ),
        ({"result": {"structuredContent": {"a": "x", "b": "y"}}}, False),
        ({"result": {"structuredContent": {"lines": ["x", "y"]}}}, True),
        ({"result": {"contents": [{"uri": "u", "blob": "eA=="}]}}, True),
    ],
)
def test_structure_triggers(msg: dict[str, object], maybe: bool) -> None:
    plain = Redactor.from_config(DlpConfig(enabled=True, builtin=True))
    raw = orjson.dumps({"jsonrpc": "2.0", "id": 1, **msg})
    assert plain.might_contain_secret(raw) is maybe


def test_detect_encoding_makes_candidate_runs_maybe() -> None:
    red = Redactor.from_config(DlpConfig(enabled=True, builtin=True, detect_encoding=True))
    assert not red.might_contain_secret(b'{"t":"short words only"}')
    assert red.might_contain_secret(b'{"t":"run QUtJQUlPU0ZPRE5ON0VYQU1QTEU="}')
    assert red.might_contain_secret(b'{"t":"pct %41KIA"}')


@pytest.mark.parametrize(
    ("pattern", "safe"),
    [
        (r"(AKIA|AGPA)[A-Z0-9]{16}", True),
        (r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}", True),
        (r"\b\d{3}-\d{2}-\d{4}\b", True),
        (r"-----BEGIN (RSA |EC )?PRIVATE KEY-----", True),
        (r"(?i)secret_[[:alpha:]]+", True),
        (r"\Qa.b\E", True),
        (r"password:\s+\S+", False),
        (r".+", False),
        (r"[^a]", False),
        (r"[ -~]", False),  # the range holds " and \
        (r"[!-#]", False),
        (r"\n", False),
        (r"\\", False),
        (r'a"b', False),
        (r"[[:space:]]", False),
        (r"\pL", False),
        (r"\x41", False),
        (r'\Qa"b\E', False),
    ],
)
def test_escape_safe(pattern: str, safe: bool) -> None:
    assert escape_safe(pattern) is safe


def test_escape_safe_policy_pattern_keeps_the_fast_path_on_multiline_text() -> None:
    red = _policy_redactor(r"\b\d{3}-\d{2}-\d{4}\b")
    clean = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"t": "line one\nline two"}})
    assert not red.might_contain_secret(clean)
    dirty = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"t": "ssn:\n123-45-6789"}})
    assert red.might_contain_secret(dirty)
    assert red.redact_line(dirty).counts == {"p0": 1}


@pytest.mark.parametrize("pattern", [r"x\Qa.b", r"x\\Qab", r"(a)|b"])
def test_patterns_combine_into_one_alternation(pattern: str) -> None:
    red = _policy_redactor(pattern, r"zz")
    out, counts = red.redact_text(
        "zz " + {r"x\Qa.b": "xa.b", r"x\\Qab": "x\\Qab"}.get(pattern, "a")
    )
    assert counts == {"p0": 1, "p1": 1}, out
