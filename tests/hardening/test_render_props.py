"""Dialog renderer properties (security.md §8.7 case 96, R-1.1/1.8/1.10): whatever the agent
sends, the text is printable ASCII with only our line breaks, every line fits the width, and
the tail of every shown value stays visible (attacks put the dangerous part last)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aip.approver.dialogs import render
from aip.approver.dialogs.render import DialogFacts, dialog_text, display_arguments

# Text that is hostile to a dialog: newlines of every kind, bidi, zero-width, tags, markup.
NASTY = "\n\r\x0b\x0c\x85\u2028\u2029\u202e\u202c\u2066\u200b\ufeff\U000e0041\u3164<>&\\\"'\x1b\x00"
hostile_text = st.text(
    alphabet=st.one_of(st.sampled_from(NASTY), st.characters(codec="utf-8"), st.just("A")),
    max_size=400,
)
plain_text = st.from_regex(r"[A-Za-z0-9 _./:@=+,-]{0,600}", fullmatch=True)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | hostile_text | plain_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)
arguments = st.dictionaries(hostile_text | plain_text, json_value, max_size=16)
facts = st.builds(
    DialogFacts,
    tool=hostile_text,
    agent_id=hostile_text,
    server=hostile_text,
    rule=hostile_text,
    ordinal=st.integers(1, 10_000),
    seconds_left=st.integers(0, 3600),
    waiting=st.integers(0, 300),
)


def _logical_lines(text: str) -> list[str]:
    """Undo our wrapping: a continuation line starts with the 4-space indent (argument lines
    start with 2 spaces and a non-space key, header lines with a letter or ``[``)."""
    out: list[str] = []
    for line in text.split("\n"):
        if line.startswith("    ") and out:
            out[-1] += line[4:]
        else:
            out.append(line)
    return out


PROPS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MIN_TAIL = 12  # the tail kept at the smallest value limit (security.md)


@PROPS
@given(facts, arguments)
def test_text_is_printable_ascii_with_only_our_line_breaks(f: DialogFacts, args: Any) -> None:
    text = dialog_text(f, args)
    assert all(0x20 <= ord(ch) < 0x7F or ch == "\n" for ch in text), repr(text)
    assert len(text) <= render.TEXT_MAX
    lines = text.split("\n")
    assert all(len(line) <= render.WIDTH for line in lines)
    # Each argument is one logical line: a payload newline never starts a line of its own.
    logical = _logical_lines(text)
    shown = min(len(args), render.MAX_ARGS_SHOWN)
    arg_lines = [ln for ln in logical if ln.startswith("  ") and not ln.startswith("  (+")]
    assert len(arg_lines) == shown
    assert logical[0] == "The agent wants to call:"


@PROPS
@given(st.dictionaries(hostile_text | plain_text, json_value, min_size=1, max_size=4))
def test_display_arguments_are_printable_ascii_single_lines(args: Any) -> None:
    for key, value in display_arguments(args).items():
        for text in (key, value):
            assert all(0x20 <= ord(ch) < 0x7F for ch in text), repr(text)
        assert len(value) <= render.VALUE_MAX + 40


@PROPS
@given(
    facts,
    st.dictionaries(
        st.from_regex(r"[a-z_]{1,12}", fullmatch=True) | hostile_text,
        hostile_text | plain_text | st.text(min_size=200, max_size=3000),
        min_size=1,
        max_size=render.MAX_ARGS_SHOWN,
    ),
)
def test_the_tail_of_every_value_stays_visible(f: DialogFacts, args: dict[str, Any]) -> None:
    """However many and however long the arguments (up to the number shown), the last
    characters of each escaped value (at least ``MIN_TAIL``), and the trusted closing lines,
    are in the text."""
    text = dialog_text(f, args)
    logical = _logical_lines(text)
    for key, value in args.items():
        prefix = f"  {render.truncate(render.show_name(key), render.KEY_MAX)}: "
        line = next((ln for ln in logical if ln.startswith(prefix)), None)
        assert line is not None, f"argument {key!r} not shown"
        shown = render.show_value(value)
        assert line.endswith(shown[-MIN_TAIL:]), (key, line[-80:])
    assert f"Auto-deny in {f.seconds_left} s." in logical
