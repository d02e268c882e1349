"""Invisible characters inside a secret do not hide it (issue 11, finding 8): the shadow view's
character set against unicodedata and the Default_Ignorable_Code_Point definition, the raw
pre-check, the walk, stderr, and a property over every built-in secret."""

from __future__ import annotations

import sys
import unicodedata

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aip.shared.dlp.precheck import re2_options
from aip.shared.dlp.redactor import Redactor
from aip.shared.dlp.shadow import (
    DEFAULT_IGNORABLE,
    FORMAT_VISIBLE,
    MAX_DISTINCT,
    SHADOW_RE2,
    ShadowView,
    shadow_bytes,
    shadow_table,
)
from aip.shared.dlp.stderr import StderrFilter
from tests.shared.dlp.test_dlp_builtin import POSITIVES
from tests.shared.dlpkit import AWS, AWS_MARK, cfg, result, text

INVISIBLE = sorted(c for c, to in shadow_table().items() if to is None)
DEFAULT_IGNORABLE_SET = {c for lo, hi in DEFAULT_IGNORABLE for c in range(lo, hi + 1)}
# PropList.txt Other_Default_Ignorable_Code_Point (stable since Unicode 7): assigned ones only.
OTHER_DEFAULT_IGNORABLE = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0}
# PropList.txt Prepended_Concatenation_Mark, and the Cf ranges the definition subtracts.
PREPENDED_CONCATENATION_MARK = {*range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2}
PREPENDED_CONCATENATION_MARK |= {0x110BD, 0x110CD}
SUBTRACTED = {*range(0xFFF9, 0xFFFC), *range(0x13430, 0x13440)} | PREPENDED_CONCATENATION_MARK
# The characters issue 11 named, and more of each kind.
NAMED = [0x034F, 0xFE0F, 0xE0020, 0x200B, 0x2060, 0x00AD, 0x180E, 0x3164, 0x115F, 0xE0100]
NAMED += [0x061C, 0x1D173, 0x2066, 0x17B4, 0xFFA0, 0x0600, 0xFFF9, 0x180B, 0xE0001, 0xFEFF]

BUILTIN = Redactor.from_config(cfg())
WITH_ENCODING = Redactor.from_config(cfg(detect_encoding=True))


def _surrogate(c: int) -> bool:
    return 0xD800 <= c <= 0xDFFF


def test_every_format_character_is_in_the_shadow_set() -> None:
    cf = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"}
    assert cf <= set(INVISIBLE), sorted(hex(c) for c in cf - set(INVISIBLE))


def test_default_ignorable_follows_its_definition() -> None:
    """Other_Default_Ignorable + Cf + Variation_Selector - White_Space - subtracted, on every
    code point this Python's unicodedata knows; the embedded (newer) list may add only code
    points unassigned here, which the property reserves."""
    for c in range(sys.maxunicode + 1):
        if _surrogate(c):
            continue
        ch = chr(c)
        category = unicodedata.category(ch)
        if category == "Cn":
            continue
        selector = unicodedata.name(ch, "").startswith(
            ("VARIATION SELECTOR", "MONGOLIAN FREE VARIATION SELECTOR")
        )
        derived = (
            c in OTHER_DEFAULT_IGNORABLE or category == "Cf" or selector
        ) and c not in SUBTRACTED
        derived = derived and not ch.isspace()
        assert (c in DEFAULT_IGNORABLE_SET) == derived, (hex(c), category)
    assert {c for lo, hi in FORMAT_VISIBLE for c in range(lo, hi + 1)} == SUBTRACTED


def test_shadow_pattern_and_table_cover_the_same_characters() -> None:
    import re2

    everything = "".join(chr(c) for c in range(sys.maxunicode + 1) if not _surrogate(c))
    raw = everything.encode()
    found = {ord(m.group().decode()) for m in re2.finditer(SHADOW_RE2.encode(), raw)}
    assert found == set(shadow_table())


@given(st.lists(st.one_of(st.sampled_from([*map(chr, shadow_table())]), st.text(max_size=4))))
def test_shadow_view_removes_and_folds_like_the_table(pieces: list[str]) -> None:
    import re2

    view = ShadowView(re2, re2_options())
    raw = "".join(pieces).encode("utf-8", "surrogatepass")
    want = shadow_bytes(raw)
    got = view.of(raw)
    assert (raw if got is None else got) == want
    many = "x".join(map(chr, INVISIBLE[: MAX_DISTINCT + 3])).encode()  # the translate branch
    assert view.of(many) == shadow_bytes(many) == b"x" * (MAX_DISTINCT + 2)


def test_no_visible_letter_digit_or_space_is_removed() -> None:
    for c in INVISIBLE:
        category = unicodedata.category(chr(c))
        assert category in {"Cf", "Cn", "Mn"} or c in OTHER_DEFAULT_IGNORABLE, hex(c)


@pytest.mark.parametrize("char", NAMED, ids=hex)
def test_named_invisible_character_inside_a_key_is_caught(char: int) -> None:
    spelled = AWS[:4] + chr(char) + AWS[4:10] + chr(char) + AWS[10:]
    raw = orjson.dumps(result(text(f"key {spelled} end")))
    assert BUILTIN.might_contain_secret(raw)
    out = BUILTIN.redact_line(raw)
    assert out.line is not None
    assert orjson.loads(out.line)["result"]["content"][0]["text"] == f"key {AWS_MARK} end"
    assert BUILTIN.redact_line(out.line).counts == {}
    # also as the key of an object, in arguments, and on stderr
    new, counts = WITH_ENCODING.redact_value({spelled: 1, "k": [spelled]})
    assert counts == {"aws-access-key": 2}
    assert AWS[4:] not in orjson.dumps(new).decode()
    f = StderrFilter(BUILTIN)
    assert f.feed(f"boot {spelled}\n".encode()) == f"boot {AWS_MARK}\n".encode()


def test_invisible_character_inside_the_key_name_is_caught() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
    line = f"aws_secret\u034f_access\U000e0041_key = {secret}"
    out, counts = BUILTIN.redact_text(line)
    assert counts == {"aws-secret-key": 1}
    assert secret not in out


def test_emoji_text_without_a_secret_stays_on_the_fast_path() -> None:
    """Emoji carry U+FE0F and U+200D: the raw pre-check looks at their shadow view instead of
    sending every such line to the decode-and-walk path."""
    msg = result(text("I \u2764\ufe0f this \U0001f468\u200d\U0001f469\u200d\U0001f467 " * 200))
    raw = orjson.dumps(msg)
    assert not BUILTIN.might_contain_secret(raw)
    assert BUILTIN.redact_line(raw).line is raw


# An invisible character, anywhere inside any built-in rule's true positive.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(POSITIVES),
    st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(INVISIBLE)), min_size=1, max_size=3),
)
def test_inserting_invisible_characters_never_stops_detection(
    positive: tuple[str, str], inserts: list[tuple[int, int]]
) -> None:
    rule, secret = positive
    spelled = secret
    for at, char in inserts:
        at = 1 + at % (len(spelled) - 1)  # strictly inside
        spelled = spelled[:at] + chr(char) + spelled[at:]
    raw = orjson.dumps(result(text(f"value: {spelled} .")))
    assert BUILTIN.might_contain_secret(raw)
    out = BUILTIN.redact_line(raw)
    assert out.counts[rule] >= 1, (rule, spelled)
    red, counts = WITH_ENCODING.redact_text(spelled)
    assert counts[rule] >= 1
    assert secret not in red


def test_a_match_in_one_view_never_hides_a_secret_in_the_other() -> None:
    """Found by the property above: soft hyphens split a Slack token so that its visible
    spelling shows a card number; the shadow view must be taken of the original text, not of
    the card-redacted one, or most of the token is shown."""
    token = "xoxp-1234567890-1234567890-1234567890-abcdef0123456789"
    spelled = "xoxp-1234567890-12\xad34567890-123456\xad7890-abcdef0123456789"
    red, counts = BUILTIN.redact_text(spelled)
    assert counts["slack-token"] == 1
    assert "abcdef0123456789" not in red
    assert "1234567890" not in red
    out = BUILTIN.redact_line(orjson.dumps(result(text(f"value: {spelled} ."))))
    assert out.counts["slack-token"] == 1
    assert token.encode() not in (out.line or b"")
    assert b"abcdef0123456789" not in (out.line or b"")
    red_b, counts_b = BUILTIN.redact_bytes(f"stderr {spelled}".encode())
    assert counts_b["slack-token"] == 1
    assert b"abcdef0123456789" not in red_b
