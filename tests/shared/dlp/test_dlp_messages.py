"""Redaction of whole JSON-RPC messages: what is walked and kept, escapes, splits, encodings."""

from __future__ import annotations

import base64
import copy
from typing import Any

import mcp.types
import orjson
import pytest

from aip.shared.dlp.redactor import Redactor, summarize
from aip.shared.dlp.scan import DlpError
from aip.shared.policy.model import DlpConfig
from tests.shared.dlpkit import AWS, AWS_MARK, assert_valid_call_result, cfg, result, text


def test_clean_message_is_relayed_as_the_same_bytes(red: Redactor) -> None:
    raw = orjson.dumps(result(text("hello\nworld " * 1000)))
    assert not red.might_contain_secret(raw)
    out = red.redact_line(raw)
    assert out.line is raw
    assert not out.counts


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"\u0041KIAIOSFODNN7EXAMPLE"}]}}',
        rb'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"\u0041\u004bIAIOSFODNN7EXAMPLE"}]}}',
        rb'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"key:\nAKIAIOSFODNN7EXAMPLE"}]}}',
        rb'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x\tAKIAIOSFODNN7EXAMPLE\n"}]}}',
        rb'{"jsonrpc":"2.0","id":1,"result":{"content":[{"\u0074ype":"text","text":"AKIAIOSFODNN7EXAMPLE"}]}}',
    ],
)
def test_json_escaped_secret_is_caught(red: Redactor, raw: bytes) -> None:
    assert red.might_contain_secret(raw)
    out = red.redact_line(raw)
    assert out.line is not None
    assert b"IOSFODNN7EXAMPLE" not in out.line
    assert out.counts == {"aws-access-key": 1}
    assert_valid_call_result(out.line)


def test_escaped_slashes_in_a_webhook_are_caught(red: Redactor) -> None:
    hook = r"https:\/\/hooks.slack.com\/services\/T00000000\/B00000000\/XXXXXXXXXXXXXXXXXXXXXXXX"
    raw = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"%s"}]}}' % (
        hook.encode()
    )
    out = red.redact_line(raw)
    assert out.counts == {"slack-webhook": 1}


def test_secret_split_across_text_items(red: Redactor) -> None:
    msg = result(text("the key is AKIAIOSF"), text("ODNN7EXAMPLE, keep it"))
    out = red.redact_line(orjson.dumps(msg))
    assert out.line is not None
    content = assert_valid_call_result(out.line)["result"]["content"]
    assert content == [text(f"the key is {AWS_MARK}"), text(f"{AWS_MARK}, keep it")]
    assert out.counts == {"aws-access-key": 1}


def test_secret_split_over_three_items_and_a_string_array(red: Redactor) -> None:
    parts = ["AKIA", "IOSFODNN", "7EXAMPLE"]
    msg = result(*(text(p) for p in parts), structuredContent={"lines": parts})
    new, counts = red.redact_message(msg)
    assert [c["text"] for c in new["result"]["content"]] == [AWS_MARK] * 3
    assert new["result"]["structuredContent"]["lines"] == [AWS_MARK] * 3
    assert counts == {"aws-access-key": 2}


def test_private_key_split_over_string_array_items(red: Redactor) -> None:
    lines = [
        "-----BEGIN RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn",
        "-----END RSA PRIVATE KEY-----",
    ]
    new, counts = red.redact_value({"lines": lines})
    assert "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn" not in orjson.dumps(new).decode()
    assert counts["private-key"] >= 1


def test_split_needing_a_separator_is_caught_with_newline_join() -> None:
    red = Redactor.from_config(cfg(("password", r"password:\s+\S{6,}"), builtin=False))
    new, counts = red.redact_message(result(text("password:"), text("hunter22 ok")))
    assert counts == {"password": 1}
    assert "hunter22" not in orjson.dumps(new).decode()


def test_errors_notifications_and_server_requests_are_redacted(red: Redactor) -> None:
    error = {"jsonrpc": "2.0", "id": 3, "error": {"code": -1, "message": AWS, "data": {"k": AWS}}}
    note = {
        "jsonrpc": "2.0",
        "method": "notifications/message",
        "params": {"level": "info", "data": f"using {AWS}"},
    }
    sampling = {
        "jsonrpc": "2.0",
        "id": "srv-1",
        "method": "sampling/createMessage",
        "params": {"messages": [{"role": "user", "content": text(AWS)}], "maxTokens": 5},
    }
    for msg in (error, note, sampling):
        out = red.redact_line(orjson.dumps(msg))
        assert out.line is not None
        assert AWS.encode() not in out.line
        back = orjson.loads(out.line)
        assert {k: back[k] for k in ("jsonrpc", "id", "method") if k in msg} == {
            k: msg[k] for k in ("jsonrpc", "id", "method") if k in msg
        }
        mcp.types.jsonrpc_message_adapter.validate_json(out.line)
    mcp.types.server_notification_adapter.validate_python(
        orjson.loads(red.redact_line(orjson.dumps(note)).line or b"")
    )
    mcp.types.server_request_adapter.validate_python(
        orjson.loads(red.redact_line(orjson.dumps(sampling)).line or b"")
    )


def test_envelope_is_never_redacted() -> None:
    red = Redactor.from_config(cfg(("word", r"[a-z]{3,}"), builtin=True))
    msg = {
        "jsonrpc": "2.0",
        "id": AWS,
        "method": "notifications/progress",
        "params": {"abc": "xyz"},
    }
    new, counts = red.redact_message(msg)
    assert (new["jsonrpc"], new["id"], new["method"]) == ("2.0", AWS, "notifications/progress")
    assert new["params"] == {"[REDACTED:word]": "[REDACTED:word]"}
    assert counts == {"word": 2}


def test_keys_and_long_integers_are_redacted(red: Redactor) -> None:
    sc = {AWS: 1, "card": 4111111111111111, "n": 1700000000000, "small": 42}
    new, counts = red.redact_message(result(text("ok"), structuredContent=sc))
    assert new["result"]["structuredContent"] == {
        AWS_MARK: 1,
        "card": "[REDACTED:card-number]",
        "n": 1700000000000,
        "small": 42,
    }
    assert counts == {"aws-access-key": 1, "card-number": 1}


def test_keys_redacted_alike_keep_both_values(red: Redactor) -> None:
    other = "AKIA" + "ABCDEFGHIJKLMNOP"
    new, _ = red.redact_value({AWS: 1, other: 2})
    assert sorted(new.values()) == [1, 2]
    assert len(new) == 2


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: base64.b64encode(s).decode(),
        lambda s: base64.urlsafe_b64encode(b"\xff\xfe" + s).decode(),
        lambda s: base64.b64encode(s).decode().rstrip("="),
        lambda s: s.hex(),
        lambda s: "0x" + s.hex().upper(),
        lambda s: "".join(f"%{c:02X}" for c in s),
        lambda s: base64.b64encode(base64.b64encode(s)).decode(),  # two levels deep
    ],
)
def test_encoded_secrets_with_detect_encoding(encode: Any) -> None:
    encoded = encode(f"token={AWS};".encode())
    on = Redactor.from_config(cfg(detect_encoding=True))
    off = Redactor.from_config(cfg(detect_encoding=False))
    line = orjson.dumps(result(text(f"blob: {encoded} end")))
    out = on.redact_line(line)
    assert out.line is not None
    assert orjson.loads(out.line)["result"]["content"][0]["text"] == f"blob: {AWS_MARK} end"
    assert off.redact_line(line).line is line


def test_oversize_message_is_blocked_not_passed() -> None:
    red = Redactor.from_config(cfg(max_scan_size=1000))
    raw = orjson.dumps(result(text("x" * 2000)))
    assert red.might_contain_secret(raw)
    out = red.redact_line(raw)
    assert out.oversize
    assert out.line is None
    assert not out.counts
    small = orjson.dumps(result(text("x" * 10)))
    assert red.redact_line(small).line is small


def test_not_json_is_an_error(red: Redactor) -> None:
    with pytest.raises(DlpError):
        red.redact_line(b'{"jsonrpc": "2.0", "id": 1, "result": "AKIA\\u00')


def test_policy_patterns_come_first_and_overlaps_are_covered_whole() -> None:
    stripe = "sk_live_" + "aB3dE5gH7jK9mN1pQ2rS4tU6"
    red = Redactor.from_config(cfg(("pw", r"password=\S{4}"), builtin=True))
    out, counts = red.redact_text(f"password={stripe} rest")
    assert out == "[REDACTED:pw] rest"  # not "[REDACTED:pw]ive_aB3d..."
    assert counts == {"pw": 1}
    red2 = Redactor.from_config(cfg(("mine", r"AKIA[A-Z0-9]{16}"), builtin=True))
    assert red2.redact_text(AWS)[0] == "[REDACTED:mine]"


def test_pattern_matching_the_marker_terminates_and_is_idempotent() -> None:
    red = Redactor.from_config(cfg(("caps", r"[A-Z]{4,}"), ("bracket", r"\["), builtin=True))
    once, _counts = red.redact_text(f"[x] {AWS} HELLO")
    # caps and aws-access-key both start at "AKIA": the policy pattern names the region
    assert once == "[REDACTED:bracket]x] [REDACTED:caps] [REDACTED:caps]"
    assert red.redact_text(once) == (once, {})


def test_anchored_policy_pattern_is_found_through_the_raw_prefilter() -> None:
    red = Redactor.from_config(cfg(("whole", r"^SECRET_[A-Z]+$"), builtin=False))
    raw = orjson.dumps(result(text("SECRET_ABC")))
    assert red.might_contain_secret(raw)
    out = red.redact_line(raw)
    assert out.counts == {"whole": 1}


def test_scan_arguments(red: Redactor) -> None:
    args = {"path": "/tmp/x", "body": {"lines": [f"aws={AWS}"], "n": 3}, "flag": True}
    before = copy.deepcopy(args)
    new, counts = red.scan_arguments(args)
    assert new == {"path": "/tmp/x", "body": {"lines": [f"aws={AWS_MARK}"], "n": 3}, "flag": True}
    assert counts == {"aws-access-key": 1}
    assert args == before
    same, none = red.scan_arguments({"path": "/tmp/x"})
    assert not none
    assert same == {"path": "/tmp/x"}


def test_display_redactor_always_has_builtins() -> None:
    plain = cfg(("mine", r"SECRET_[A-Z]+"), builtin=False)
    assert "aws-access-key" not in Redactor.from_config(plain).rule_names
    shown = Redactor.from_config(plain, for_display=True)
    assert shown.rule_names[0] == "mine"
    assert "aws-access-key" in shown.rule_names
    assert shown.redact_text(f"SECRET_X {AWS}")[0] == f"[REDACTED:mine] {AWS_MARK}"
    assert Redactor.builtin_only().redact_text("SECRET_X")[0] == "SECRET_X"


def test_too_deeply_nested_message_is_an_error_not_a_pass(red: Redactor) -> None:
    deep: Any = AWS
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(DlpError):
        red.redact_message({"jsonrpc": "2.0", "id": 1, "result": {"x": deep}})
    with pytest.raises(DlpError):
        red.scan_arguments({"x": deep})


def test_redactor_from_a_loaded_policy() -> None:
    from aip.shared.policy.load import load_policy_text

    policy = load_policy_text(
        "apiVersion: aip.io/v1alpha2\nkind: AgentPolicy\nmetadata:\n  name: dlp\n"
        "spec:\n  allowed_tools: [t]\n  dlp:\n    builtin: true\n    detect_encoding: true\n"
        "    max_scan_size: 2KB\n    patterns:\n"
        "      - name: Ticket\n        regex: 'TCK-[0-9]{6}'\n"
    )
    red = Redactor.from_config(policy.dlp)
    assert red.rule_names[0] == "Ticket"
    assert red.max_scan_size == 2048
    enc = base64.b64encode(AWS.encode()).decode()
    out, counts = red.redact_text(f"TCK-123456 {enc}")
    assert out == f"[REDACTED:Ticket] {AWS_MARK}"
    assert counts == {"Ticket": 1, "aws-access-key": 1}
    assert red.redact_line(orjson.dumps(result(text("x" * 3000)))).oversize


def test_line_keeps_its_newline_and_counts_summarize(red: Redactor) -> None:
    raw = orjson.dumps(
        result(text(f"{AWS} {AWS} eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.x"))
    )
    out = red.redact_line(raw + b"\n")
    assert out.line is not None
    assert out.line.endswith(b"}\n")
    assert out.line.count(b"\n") == 1
    assert summarize(out.counts) == ["aws-access-key:2", "jwt:1"]
    clean = orjson.dumps(result(text("ok"))) + b"\n"
    assert red.redact_line(clean).line is clean


def test_redactor_without_rules_passes_everything_untouched() -> None:
    red = Redactor.from_config(DlpConfig(enabled=True))
    raw = rb'{"jsonrpc":"2.0","id":1,"result":{"t":"\u0041KIAIOSFODNN7EXAMPLE","l":["a","b"]}}'
    assert not red.might_contain_secret(raw)
    assert red.redact_line(raw).line is raw
    assert red.redact_text(AWS) == (AWS, {})


def test_split_across_a_string_and_a_text_object_in_one_array(red: Redactor) -> None:
    msg = result(text("ok"), structuredContent={"items": ["AKIAIOSF", {"text": "ODNN7EXAMPLE"}]})
    raw = orjson.dumps(msg)
    assert red.might_contain_secret(raw)
    out = red.redact_line(raw)
    assert out.line is not None
    assert orjson.loads(out.line)["result"]["structuredContent"]["items"] == [
        AWS_MARK,
        {"text": AWS_MARK},
    ]


def test_a_non_text_item_ends_a_run_of_text_items(red: Redactor) -> None:
    items = ["AKIAIOSF", 5, "ODNN7EXAMPLE"]
    new, counts = red.redact_value({"items": items})
    assert new == {"items": items}
    assert not counts


def test_scan_bytes_is_the_fast_path(red: Redactor) -> None:
    assert red.scan_bytes(orjson.dumps(result(text(AWS))))
    assert not red.scan_bytes(orjson.dumps(result(text("fine"))))


def test_many_secrets_and_fake_markers_stay_linear(red: Redactor) -> None:
    """An adversarial server cannot make redaction quadratic (markers x matches, pieces).

    Measured as growth, in this process's CPU time: four times the input must cost well under
    the sixteen times a quadratic path would (a wall-clock bound failed on a loaded host)."""
    import time

    def cost(n: int) -> float:
        blob = f"[REDACTED:aws-access-key]{AWS} " * n
        pieces = ["AKIAIOSF", "ODNN7EXAMPLE "] * (n // 2)
        start = time.process_time()
        out, counts = red.redact_text(blob)
        _, split_counts = red.redact_value(pieces)
        elapsed = time.process_time() - start
        assert counts == {"aws-access-key": n}
        assert split_counts == {"aws-access-key": n // 2}
        assert AWS not in out
        return elapsed

    cost(250)  # compiled patterns, warm caches
    small, large = min(cost(1250) for _ in range(3)), min(cost(5000) for _ in range(2))
    assert large < 8 * small, (small, large)
