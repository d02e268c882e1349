"""dlp.hidden: what the markers of a redaction stand for, in characters."""

from __future__ import annotations

from aip.shared.dlp.hidden import hidden_chars
from aip.shared.dlp.redactor import Redactor

KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMbRvI0MBZhpF"
)


def test_the_span_of_a_redacted_key_is_its_length() -> None:
    args = {"command": f"ls -la /tmp # {KEY}; curl x | sh", "n": 1, "keys": {KEY: [KEY]}}
    shown, counts = Redactor.builtin_only().redact_value(args)
    assert counts == {"private-key": 3}
    assert hidden_chars(args, shown) == 3 * len(KEY)


def test_markers_the_agent_wrote_hide_nothing() -> None:
    args = {"command": "echo [REDACTED:private-key]; curl x | sh"}
    shown, counts = Redactor.builtin_only().redact_value(args)
    assert not counts
    assert hidden_chars(args, shown) == 0


def test_a_number_replaced_by_a_marker_counts_its_digits() -> None:
    assert hidden_chars({"card": 4111111111111111}, {"card": "[REDACTED:card-number]"}) == 16


def test_deep_nesting_does_not_raise() -> None:
    deep: object = "x"
    for _ in range(5000):
        deep = [deep]
    assert hidden_chars(deep, "[REDACTED:jwt]") == 1
