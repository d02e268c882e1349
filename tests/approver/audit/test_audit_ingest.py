"""Spools of proxies that are gone are ingested in order, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from aip.approver.audit.chain import verify_files
from aip.approver.audit.ingest import ingest_orphan_spools, proxy_record_problem
from aip.approver.audit.writer import AuditLog
from aip.shared.audit.record import decision_record, not_forwarded_record
from aip.shared.audit.spool import Spool
from aip.shared.outcomes import Outcome
from tests.audit_schema_check import assert_valid_log

S1, S2 = "1111111111111111", "2222222222222222"


def rec(session: str, rseq: int) -> dict[str, Any]:
    return decision_record(
        outcome=Outcome.POLICY_ALLOWED, session=session, agent_id="a", tool="t", rseq=rseq
    )


async def test_orphans_ingested_in_order_once(tmp_path: Path) -> None:
    spools = tmp_path / "spool"
    for session in (S1, S2):
        spool = Spool(session, spools)
        spool.append([rec(session, i) for i in range(1, 101)])
        spool.append(
            [
                not_forwarded_record(
                    session=session, request_id=1, why="late", agent_id="a", rseq=101
                )
            ]
        )
        spool.close()
    log = tmp_path / "aip-audit.jsonl"
    async with AuditLog(log) as audit:
        await audit.append_proxy_records([rec(S1, 1), rec(S1, 2)])  # already handed over
        assert await ingest_orphan_spools(audit, spools) == 200
        assert await ingest_orphan_spools(audit, spools) == 0
    assert list(spools.iterdir()) == []
    records = [orjson.loads(x) for x in log.read_bytes().splitlines()][1:]
    for session in (S1, S2):
        assert [r["rseq"] for r in records if r["session"] == session] == list(range(1, 102))
    assert verify_files([log]).ok
    assert_valid_log(log)


def test_proxy_record_checks() -> None:
    assert proxy_record_problem(rec(S1, 1)) is None
    assert proxy_record_problem([]) == "not an object"
    assert "event" in str(proxy_record_problem({**rec(S1, 1), "event": "genesis"}))
    assert "session" in str(proxy_record_problem({**rec(S1, 1), "session": "x"}))
    assert "rseq" in str(proxy_record_problem({**rec(S1, 1), "rseq": True}))
