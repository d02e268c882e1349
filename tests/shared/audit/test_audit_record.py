"""The audit record: guide fields and types, printable-ASCII serialization, capping, key."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aip.shared.audit import record as ar
from aip.shared.audit.stamp import rfc3339
from aip.shared.outcomes import ROWS, Outcome
from aip.shared.protocol.messages import HumanDecision
from tests.audit_schema_check import record_errors
from tests.support.systools import required_tool

SESSION = "0123456789abcdef"
KEY = b"k" * 32
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def chained(record: dict[str, Any], seq: int = 2) -> dict[str, Any]:
    return {**record, "seq": seq, "prev": "0" * 64}


def guide_record() -> dict[str, Any]:
    return ar.decision_record(
        outcome=Outcome.HUMAN_APPROVED,
        session=SESSION,
        agent_id="agent-abc123",
        user="user@example.com",
        server="fs",
        pid=4242,
        tool="write_file",
        arguments={"path": "/etc/config.yaml"},
        request_id=7,
        policy={"name": "hitl-example", "sha256": "ab" * 32},
        rule="tool_rules[0] (write_file ask)",
        human=HumanDecision(
            approved=True, response_time_ms=3420, dialog_shown_at=rfc3339(1772556296.580)
        ),
        queue_wait_ms=12,
        timestamp=1772556300.0,
    )


def test_guide_example_fields_and_types() -> None:
    rec = guide_record()
    # the guide's example record, field by field, with the same JSON types
    assert TS_RE.match(rec["timestamp"])
    assert rec["timestamp"] == "2026-03-03T16:45:00.000Z"
    assert isinstance(rec["agent_id"], str)
    assert isinstance(rec["user"], str)
    assert rec["tool"] == "write_file"
    assert rec["arguments"] == {"path": "/etc/config.yaml"}
    assert rec["decision"] == "allow"
    assert rec["reason"] == "human approved"
    hd = rec["human_decision"]
    assert hd == {
        "approved": True,
        "response_time_ms": 3420,
        "dialog_shown_at": "2026-03-03T16:44:56.580Z",
    }
    assert list(rec)[:8] == [
        "timestamp",
        "agent_id",
        "user",
        "tool",
        "arguments",
        "decision",
        "reason",
        "human_decision",
    ]
    assert record_errors(chained(rec)) == []


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_has_its_reason_and_validates(outcome: Outcome) -> None:
    rec = ar.decision_record(outcome=outcome, session=SESSION, agent_id="a", user="u")
    assert rec["reason"] == ROWS[outcome].audit_reason
    assert rec["decision"] == ("allow" if ROWS[outcome].forwards else "deny")
    assert rec["error_code"] == ROWS[outcome].code
    assert rec["outcome"] == outcome.value
    assert "human_decision" not in rec  # only when a dialog was shown
    assert rec["tool"] is None
    assert rec["arguments"] is None
    assert record_errors(chained(rec)) == []


def test_monitor_mode_record() -> None:
    rec = ar.decision_record(
        outcome=Outcome.POLICY_ALLOWED,
        session=SESSION,
        agent_id="a",
        user="u",
        tool="rm",
        arguments={},
        mode="monitor",
        monitor_would=Outcome.DENIED_TOOL.value,
    )
    assert rec["decision"] == "allow"
    assert rec["reason"] == "monitor"
    assert rec["monitor"] == {"would": "denied_tool"}
    assert rec["error_code"] is None
    assert record_errors(chained(rec)) == []


def test_meta_and_not_forwarded_records_validate() -> None:
    nf = ar.not_forwarded_record(
        session=SESSION, request_id="r1", why="cancelled", agent_id="a", rseq=3
    )
    assert "decision" not in nf  # the guide's jq query counts the approval only once
    assert record_errors(chained(nf)) == []
    reload = ar.meta_record(ar.Event.POLICY_RELOAD, policy={"name": "p", "sha256": "x"})
    assert record_errors(chained(reload)) == []
    assert record_errors(chained({**nf, "surprise": 1}))  # the schema is strict


def test_schema_reason_enum_is_the_outcome_table() -> None:
    schema = orjson.loads(Path(ar.__file__).with_name("schema.json").read_bytes())
    reasons = set(schema["$defs"]["decision"]["properties"]["reason"]["enum"])
    assert reasons == {r.audit_reason for r in ROWS.values()} | {ar.MONITOR_REASON}


NASTY = 'a\x00\x1b[31m\x7f\x9b31m\u202eevil\u200b\u2028\ufeff\U0001f600\U000e0041 "\\ é'


def test_serialization_is_printable_ascii_and_round_trips() -> None:
    rec = {"tool": NASTY, "arguments": {NASTY: [NASTY, 1, None, 2.5]}}
    line = ar.serialize(rec)
    assert all(0x20 <= b <= 0x7E for b in line)
    assert orjson.loads(line) == rec
    assert b"\\ud83d\\ude00" in line  # astral characters become a surrogate pair
    assert b"\\u007f" in line
    assert b"\\u009b" in line
    assert b"\\u202e" in line


@given(st.text())
def test_any_text_serializes_to_printable_ascii(text: str) -> None:
    line = ar.serialize({"v": text, text: 1})
    assert re.fullmatch(rb"[\x20-\x7e]*", line)
    assert orjson.loads(line) == {"v": text, text: 1}


def test_jq_reads_the_real_values() -> None:
    line = ar.serialize({"tool": NASTY})
    out = subprocess.run(
        [required_tool("jq"), "-j", ".tool"],
        input=line,
        capture_output=True,
        check=True,
        timeout=10,
    )
    assert out.stdout.decode("utf-8") == NASTY


def test_long_values_are_capped_with_hmac() -> None:
    value = "H" * 600 + "x" * 5000 + "T" * 600
    capped = ar.cap_string(value, KEY)
    assert capped.startswith("H" * 512)
    assert capped.endswith("T" * 512)
    assert f"[capped: {len(value)} chars, hmac-sha256:" in capped
    assert ar.cap_string(value, KEY) == capped  # deterministic under one key
    assert ar.cap_string(value, b"j" * 32) != capped  # keyed: not a plain hash
    assert ar.cap_string("short", KEY) == "short"
    rec = guide_record()
    rec["arguments"] = {"content": value, "k" * 3000: 1}
    out = ar.cap_record(rec, KEY)
    assert len(out["arguments"]["content"]) < 1300
    assert all(len(k) < 1300 for k in out["arguments"])
    assert rec["arguments"]["content"] == value  # the input is not modified
    assert record_errors(chained(out)) == []


def test_huge_arguments_object_is_replaced_whole() -> None:
    rec = guide_record()
    rec["arguments"] = {"items": [f"value-{i}" for i in range(5000)]}
    out = ar.cap_record(rec, KEY)
    capped = out["arguments"]["aip_capped"]
    assert capped["bytes"] > ar.MAX_ARGUMENTS_BYTES
    assert len(capped["hmac_sha256"]) == 64
    assert capped["head"].startswith('{"items":["value-0"')
    assert record_errors(chained(out)) == []


def test_small_record_is_not_copied() -> None:
    rec = guide_record()
    assert ar.cap_record(rec, KEY) is rec


def test_the_proxys_template_gives_the_builders_bytes() -> None:
    """The proxy's allow path appends the session's pre-serialized fields: the same line as
    serializing decision_record's dict, and a record the schema accepts."""
    session = {
        "session": SESSION,
        "server": "fs",
        "pid": 42,
        "policy": {"name": "p", "sha256": "x"},
    }
    own = {"agent_id": "a", "tool": "read_file", "arguments": {"path": "/x"}, "request_id": 3}
    own |= {"rule": "tool_rules[0]", "dlp": ["aws:1"], "rseq": 9, "timestamp": 1772556300.0}
    template = ar.DecisionTemplate(**session, mode="monitor")
    line = template.line(
        ar.record_fields(Outcome.POLICY_ALLOWED, monitor_would="denied_tool", **own)
    )
    rec = ar.decision_record(
        outcome=Outcome.POLICY_ALLOWED,
        mode="monitor",
        monitor_would="denied_tool",
        **session,
        **own,
    )
    assert line == orjson.dumps(rec) + b"\n"
    assert record_errors(chained({**orjson.loads(line), "user": "u"})) == []  # as written
