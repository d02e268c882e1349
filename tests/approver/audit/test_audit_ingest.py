"""Spools of proxies that are gone are ingested in order, once, and only lines that open with
the key the session's hello gave; every other line is recorded as ``spool_rejected``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from aip.approver.audit.chain import verify_files
from aip.approver.audit.ingest import ingest_orphan_spools, proxy_record_problem
from aip.approver.audit.writer import AuditLog
from aip.approver.session_keys import SessionKeys
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
    keys = SessionKeys(tmp_path / "keys")
    for session in (S1, S2):
        spool = Spool(session, spools)
        assert keys.bind(session, spool.key.hex())
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
        audit.append_proxy_records([rec(S1, 1), rec(S1, 2)])  # already handed over
        assert await ingest_orphan_spools(audit, keys, spools) == 200
        assert await ingest_orphan_spools(audit, keys, spools) == 0
    assert list(spools.iterdir()) == []
    records = [orjson.loads(x) for x in log.read_bytes().splitlines()][1:]
    for session in (S1, S2):
        assert [r["rseq"] for r in records if r["session"] == session] == list(range(1, 102))
    assert verify_files([log]).ok
    assert_valid_log(log)
    assert list((tmp_path / "keys").iterdir()) == []  # ingested: the keys are not needed


async def test_an_orphan_spool_of_both_macs_is_ingested_whole(tmp_path: Path) -> None:
    """A proxy signs with the HMAC until a welcome lets it sign with BLAKE2b: its spool may
    hold both kinds of line, and the approver takes every one of them."""
    spools = tmp_path / "spool"
    keys = SessionKeys(tmp_path / "keys")
    spool = Spool(S1, spools)
    assert keys.bind(S1, spool.key.hex())
    spool.append([rec(S1, i) for i in range(1, 4)])
    spool.sign_with_mac2(True)
    spool.append([rec(S1, i) for i in range(4, 7)])
    spool.sign_with_mac2(False)  # welcomed by an older approver after that
    spool.append([rec(S1, 7)])
    spool.close()
    macs = [line[:64] for line in (spools / f"{S1}.jsonl").read_bytes().splitlines()]
    assert len(set(macs)) == 7
    log = tmp_path / "aip-audit.jsonl"
    async with AuditLog(log) as audit:
        assert await ingest_orphan_spools(audit, keys, spools) == 7
    records = [orjson.loads(x) for x in log.read_bytes().splitlines()][1:]
    assert [r["rseq"] for r in records] == list(range(1, 8))
    assert all(r["event"] == "decision" for r in records)  # nothing rejected


async def test_forged_and_altered_lines_are_recorded_not_ingested(tmp_path: Path) -> None:
    spools = tmp_path / "spool"
    keys = SessionKeys(tmp_path / "keys")
    spool = Spool(S1, spools)
    assert keys.bind(S1, spool.key.hex())
    spool.append([rec(S1, i) for i in (1, 2, 3)])
    spool.close()
    path = spools / f"{S1}.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    assert b"policy allowed" in lines[1]
    lines[1] = lines[1].replace(b"policy allowed", b"human approved")  # MAC kept, body altered
    human = {**rec(S1, 50), "decision": "allow", "reason": "human approved"}
    forged = b"%s %s\n" % (b"0" * 64, orjson.dumps(human))
    path.write_bytes(b"".join([*lines, forged, orjson.dumps(rec(S1, 51)) + b"\n"]))
    log = tmp_path / "aip-audit.jsonl"
    async with AuditLog(log) as audit:
        assert await ingest_orphan_spools(audit, keys, spools) == 2
    records = [orjson.loads(x) for x in log.read_bytes().splitlines()][1:]
    assert [r["rseq"] for r in records if r["event"] == "decision"] == [1, 3]
    assert not [r for r in records if r.get("reason") == "human approved"]
    rejected = [(r["line"], r["reason"]) for r in records if r["event"] == "spool_rejected"]
    assert rejected == [(2, "MAC mismatch"), (4, "MAC mismatch"), (5, "no MAC")]
    assert all(r["file"] == str(path) for r in records if r["event"] == "spool_rejected")
    assert not path.exists()
    assert verify_files([log]).ok
    assert_valid_log(log)


async def test_a_spool_without_a_key_is_recorded_and_set_aside(tmp_path: Path) -> None:
    spools = tmp_path / "spool"
    spool = Spool(S2, spools)
    spool.append([rec(S2, 1)])
    spool.close()
    log = tmp_path / "aip-audit.jsonl"
    async with AuditLog(log) as audit:
        keys = SessionKeys(tmp_path / "keys")  # S2 never said hello here
        assert await ingest_orphan_spools(audit, keys, spools) == 0
        assert await ingest_orphan_spools(audit, keys, spools) == 0  # once, not every scan
    records = [orjson.loads(x) for x in log.read_bytes().splitlines()][1:]
    assert [(r["event"], r["line"]) for r in records] == [("spool_rejected", 0)]
    assert (spools / f"{S2}.jsonl.rejected").exists()
    assert_valid_log(log)


def test_proxy_record_checks() -> None:
    assert proxy_record_problem(rec(S1, 1)) is None
    assert proxy_record_problem([]) == "not an object"
    assert "event" in str(proxy_record_problem({**rec(S1, 1), "event": "genesis"}))
    assert "session" in str(proxy_record_problem({**rec(S1, 1), "session": "x"}))
    assert "rseq" in str(proxy_record_problem({**rec(S1, 1), "rseq": True}))
    for event in ([], {}, ["decision"]):  # not a string: refused, never a TypeError
        assert "event" in str(proxy_record_problem({**rec(S1, 1), "event": event}))


async def test_a_spool_line_whose_event_is_not_a_string_is_rejected(tmp_path: Path) -> None:
    """An authentic line (the session's key) whose event is a list: rejected as its line, the
    rest ingested. ``in`` the event set raised TypeError on it, which ended the ingest (and
    the approver's periodic spool scan with it)."""
    spools = tmp_path / "spool"
    keys = SessionKeys(tmp_path / "keys")
    spool = Spool(S1, spools)
    assert keys.bind(S1, spool.key.hex())
    spool.append([rec(S1, 1), {**rec(S1, 2), "event": ["decision"]}, rec(S1, 3)])
    spool.close()
    log = tmp_path / "aip-audit.jsonl"
    async with AuditLog(log) as audit:
        assert await ingest_orphan_spools(audit, keys, spools) == 2
    records = [orjson.loads(x) for x in log.read_bytes().splitlines()][1:]
    assert [r["rseq"] for r in records if r["event"] == "decision"] == [1, 3]
    rejected = [(r["line"], r["reason"]) for r in records if r["event"] == "spool_rejected"]
    assert rejected == [(2, "event ['decision'] is not one a proxy may send")]
    assert_valid_log(log)
