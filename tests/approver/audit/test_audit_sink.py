"""The approver's DecisionLog over the audit log: completion, user, fallbacks, acks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from aip.approver.audit.files import FileOps
from aip.approver.audit.sink import AuditSink
from aip.approver.audit.writer import AuditUnavailable
from aip.shared.audit.record import decision_record
from aip.shared.outcomes import Outcome
from tests.audit_schema_check import assert_valid_log

SESSION = "0123456789abcdef"


def approver_record(request_id: int) -> dict[str, Any]:
    # the shape aip.approver.audit.decision_log builds: no rseq, method, dlp or monitor
    return {
        "event": "decision",
        "timestamp": "2026-03-03T16:45:00.000Z",
        "agent_id": "agent-abc123",
        "user": "someone",
        "tool": "write_file",
        "arguments": {"path": "/etc/config.yaml"},
        "decision": "allow",
        "reason": "human approved",
        "human_decision": {
            "approved": True,
            "response_time_ms": 3420,
            "dialog_shown_at": "2026-03-03T16:44:56.580Z",
        },
        "request_id": request_id,
        "session": SESSION,
        "server": "fs",
        "pid": 1,
        "policy": {"name": "p", "sha256": "0" * 64},
        "rule": "tool_rules[0] (write_file ask)",
        "mode": "enforce",
        "outcome": "human_approved",
        "error_code": None,
        "queue_wait_ms": 0,
    }


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


class FailingSync(FileOps):
    fail = False

    def sync(self, fd: int) -> None:
        if self.fail:
            raise OSError(5, "Input/output error (injected)")
        super().sync(fd)


async def test_records_are_completed_and_proxy_users_overridden(tmp_path: Path) -> None:
    log = tmp_path / "aip-audit.jsonl"
    async with AuditSink(log, spool_dir=tmp_path / "spool") as sink:
        assert sink.available()
        await sink.record(approver_record(1), durable=True)
        proxy = decision_record(
            outcome=Outcome.POLICY_ALLOWED, session=SESSION, agent_id="a", user="root!", rseq=1
        )
        bad = {"event": "genesis", "session": SESSION, "rseq": 2}
        assert sink.ingest([proxy, bad]) == [1, 2]  # the malformed one is acked too
        assert sink.ingest([proxy]) == [1]  # a re-send: acked, not written again
    records = lines(log)
    assert [r["event"] for r in records] == ["genesis", "decision", "decision"]
    assert records[1]["method"] == "tools/call"
    assert records[1]["user"] == "someone"
    assert records[2]["user"] != "root!"  # the approver names the user
    assert_valid_log(log)


async def test_failed_fsync_leaves_a_not_forwarded_record(tmp_path: Path) -> None:
    log = tmp_path / "aip-audit.jsonl"
    ops = FailingSync()
    async with AuditSink(log, spool_dir=tmp_path / "spool", ops=ops, probe_interval_s=0.01) as s:
        ops.fail = True
        with pytest.raises(AuditUnavailable):
            await s.record(approver_record(7), durable=True)
        assert not s.available()
        ops.fail = False
        async with asyncio.timeout(5):  # the probe reopens within ~10 ms
            while not s.available():  # noqa: ASYNC110 - polls writer state, bounded
                await asyncio.sleep(0.01)
    events = [(r["event"], r.get("request_id")) for r in lines(log)]
    assert ("not_forwarded", 7) in events  # the allow line may exist, but it was never sent
    assert_valid_log(log)


async def test_unwritable_log_keeps_a_deny_record_for_later(tmp_path: Path) -> None:
    log = tmp_path / "aip-audit.jsonl"
    log.mkdir()
    async with AuditSink(log, spool_dir=tmp_path / "spool", probe_interval_s=60) as sink:
        assert not sink.available()
        with pytest.raises(AuditUnavailable):
            await sink.record(approver_record(9), durable=True)
        with pytest.raises(AuditUnavailable):
            sink.ingest([approver_record(10) | {"rseq": 1}])  # no ack: stays spooled
        assert len(sink.log._backlog) == 1
        assert sink.log._backlog[0]["outcome"] == "audit_unavailable"
