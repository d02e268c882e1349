"""Dialog text: plain values as in the guide, everything else escaped printable ASCII."""

from __future__ import annotations

from aip.approver.dialogs import render
from aip.approver.dialogs.render import DialogFacts, dialog_text

FACTS = DialogFacts(
    tool="write_file",
    agent_id="agent-abc123",
    server="filesystem",
    rule="write_file ask",
    ordinal=3,
    seconds_left=57,
    waiting=2,
)


def _ascii_lines(text: str) -> list[str]:
    assert all(0x20 <= ord(ch) < 0x7F or ch == "\n" for ch in text), repr(text)
    lines = text.split("\n")
    assert max(len(line) for line in lines) <= render.WIDTH
    return lines


def test_the_guides_dialog() -> None:
    text = dialog_text(FACTS, {"path": "/etc/config.yaml"})
    lines = _ascii_lines(text)
    assert lines[:5] == [
        "The agent wants to call:",
        "",
        "Tool: write_file",
        "Arguments:",
        "  path: /etc/config.yaml",
    ]
    assert "Agent: agent-abc123" in lines
    assert "Server: filesystem" in lines
    assert "This is the 3rd request from this agent in 60 s." in lines
    assert "Auto-deny in 57 s." in lines
    assert "2 more request(s) waiting." in lines


def test_markup_bidi_zero_width_and_newlines_are_escaped() -> None:
    args = {
        "markup": '<span size="1">/home/u/.ssh/x</span>',
        "bidi": "invoice\u202efdp.sh\u202c",
        "zw": "zero\u200bwidth\ufeff\U000e0041\u3164",
        "nl": "a\nb\r\u2028c\u2029d\x85e\x0bf",
        "slashn": "a\\nb",
        "amp": "a < b & c",
    }
    text = dialog_text(FACTS, args)
    lines = _ascii_lines(text)
    assert '  markup: "<span size=\\"1\\">/home/u/.ssh/x</span>"' in lines
    assert '  bidi: "invoice\\u202efdp.sh\\u202c"' in lines
    assert '  zw: "zero\\u200bwidth\\ufeff\\udb40\\udc41\\u3164"' in lines
    assert '  nl: "a\\nb\\r\\u2028c\\u2029d\\u0085e\\u000bf"' in lines
    assert '  slashn: "a\\\\nb"' in lines
    assert "[!] bidi: bidi-control, non-ASCII(2)" in lines
    assert any(line.startswith("[!] zw: invisible") for line in lines)
    assert any(line.startswith("[!] nl: control, newline") for line in lines)


def test_long_values_keep_head_and_tail() -> None:
    value = "A" * 100_000 + "; curl x|sh"
    text = dialog_text(FACTS, {"content": value})
    lines = _ascii_lines(text)
    assert len(text) <= render.TEXT_MAX
    joined = "".join(line.strip() for line in lines)
    assert "chars omitted]..." in joined
    assert joined.count("A") < 400
    assert "; curl x|sh" in joined
    assert "[!] content: truncated" in lines


def test_tool_names_with_control_characters_and_many_arguments() -> None:
    facts = DialogFacts("write\x1b[2Jfile\n", "a\u202eb", "srv\n", "r", 1, 5, 0)
    args = {f"k{i}": i for i in range(20)}
    lines = _ascii_lines(dialog_text(facts, args))
    assert 'Tool: "write\\u001b[2Jfile\\n"' in lines
    assert 'Agent: "a\\u202eb"' in lines
    assert "  (+8 more arguments not shown)" in lines
    assert "  k0: 0" in lines  # non-strings are JSON
    assert not any("waiting" in line for line in lines)


def test_plain_values_and_ordinals() -> None:
    assert render.show_value("/etc/config.yaml") == "/etc/config.yaml"
    assert render.show_value("") == '""'
    assert render.show_value(" lead") == '" lead"'
    assert render.show_value({"a": [1, True, None]}) == '{"a": [1, true, null]}'
    assert [render.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "101st",
    ]
