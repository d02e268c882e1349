"""Dialog renderer properties (security.md §8.7 case 96, R-1.1/1.8/1.10; issue 11 findings
4 and 6): whatever the agent sends, the text is printable ASCII with only our line breaks and
every line fits the width; for every backend the text fits what it shows, or Allow is
withheld; when Allow is offered every argument is named and the tail of every value is
visible (attacks put the dangerous part last), and who asks comes first."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aip.approver.dialogs import escape, render
from aip.approver.dialogs.base import Prompt
from aip.approver.dialogs.gui import ZENITY_FIT
from aip.approver.dialogs.kdialog_xdialog import KDIALOG_FIT, XDIALOG_FIT, XDIALOG_TEXT_MAX, Xdialog
from aip.approver.dialogs.native import OSASCRIPT_FIT
from aip.approver.dialogs.powershell import POWERSHELL_FIT
from aip.approver.dialogs.render import DialogFacts, Fit, dialog_text, display_arguments

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
# Many arguments (the 12-decoy attack and beyond) and long values, up to a few thousand chars.
long_text = st.text(min_size=200, max_size=3000) | st.builds(
    lambda n: "A" * n, st.integers(0, 9000)
)
many_arguments = st.dictionaries(
    st.from_regex(r"[a-z_]{1,12}", fullmatch=True) | hostile_text,
    hostile_text | plain_text | long_text,
    max_size=40,
)
FITS = {
    "exec": render.WHOLE,
    "zenity": ZENITY_FIT,
    "kdialog": KDIALOG_FIT,
    "xdialog": XDIALOG_FIT,
    "osascript": OSASCRIPT_FIT,
    "powershell": POWERSHELL_FIT,
}
fits = st.sampled_from(sorted(FITS))
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


def _printable(text: str) -> None:
    assert all(0x20 <= ord(ch) < 0x7F or ch == "\n" for ch in text), repr(text)
    assert all(len(line) <= escape.WIDTH for line in text.split("\n"))


@PROPS
@given(facts, arguments)
def test_text_is_printable_ascii_with_only_our_line_breaks(f: DialogFacts, args: Any) -> None:
    text = dialog_text(f, args)
    _printable(text)
    # Each argument is one logical line: a payload newline never starts a line of its own.
    logical = _logical_lines(text)
    start = logical.index("The agent wants to call:")
    arg_lines = [ln for ln in logical[start:] if ln.startswith("  ")]
    assert len(arg_lines) == len(args)
    assert logical[0].startswith("Agent: ")


@PROPS
@given(facts, many_arguments, fits)
def test_every_backend_gets_what_it_shows_whole_or_allow_is_withheld(
    f: DialogFacts, args: dict[str, Any], backend: str
) -> None:
    """The property of issue 11 finding 6: within each backend's limit, or withheld; with
    Allow offered, every argument named and every value's tail visible."""
    fit: Fit = FITS[backend]
    shown = render.render(f, args, fit)
    _printable(shown.text)
    lines = shown.text.split("\n")
    limits = fit.scroll if shown.scroll else fit.dialog
    assert limits is not None
    assert limits.holds(lines), (backend, len(lines), len(shown.text))
    logical = _logical_lines(shown.text)
    assert logical[0].startswith("Agent: ")  # who asks can never be pushed out
    assert any(ln.startswith("Server: ") for ln in logical[:6])
    if shown.withheld:
        assert any(ln.startswith("ALLOW IS WITHHELD: ") for ln in logical)
        return
    for key, value in args.items():
        # A summary may shorten a long name (head + tail); a view that fits shows it whole.
        names = (escape.show_name(key), escape.truncate(escape.show_name(key), render.KEY_MAX))
        line = next((ln for ln in logical if ln.startswith(tuple(f"  {n}: " for n in names))), None)
        assert line is not None, f"argument {key!r} not shown"
        shown_value = escape.show_value(value)
        assert line.endswith(shown_value[-MIN_TAIL:]), (key, line[-80:])
        if shown.scroll or not any(ln.startswith("[!] ") and "shortened" in ln for ln in logical):
            whole = f"  {escape.show_name(key)}: {shown_value}"
            assert whole in logical, f"argument {key!r} not shown whole"


@PROPS
@given(facts, many_arguments)
def test_xdialog_never_gets_more_than_its_limit(f: DialogFacts, args: dict[str, Any]) -> None:
    shown = render.render(f, args, XDIALOG_FIT)
    prompt = Prompt(1, "a", "s", "t", {}, shown.text, "r", 5, 0, withheld=shown.withheld)
    argv = Xdialog("/usr/bin/Xdialog").argv(prompt)
    text = argv[argv.index("--msgbox" if shown.withheld else "--yesno") + 1]
    assert len(text.encode()) <= XDIALOG_TEXT_MAX
    assert "\\" not in text


@PROPS
@given(st.dictionaries(hostile_text | plain_text, json_value, min_size=1, max_size=4))
def test_display_arguments_are_printable_ascii_single_lines(args: Any) -> None:
    for key, value in display_arguments(args).items():
        for text in (key, value):
            assert all(0x20 <= ord(ch) < 0x7F for ch in text), repr(text)
        assert len(value) <= escape.VALUE_MAX + 40
