"""The approver's path for proxy records (sink.ingest: checked, completed, named, chained)
writes byte for byte what the path before it wrote, and refuses the same records.

The reference below is that earlier path, kept verbatim in spirit: ``complete_record`` as a
copy, ``user`` set to None by the check, then filled with the writer's name by a second copy,
then serialized with ``seq``/``prev`` spliced in (capped when long). Any faster path must keep
these lines identical (issue 16: nothing bought by changing what the log says).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from aip.approver.audit.chain import verify_files
from aip.approver.audit.files import chain_files
from aip.approver.audit.ingest import PROXY_EVENTS
from aip.approver.audit.sink import AuditSink
from aip.shared.audit.record import (
    CAP_CHARS,
    Event,
    ascii_json,
    cap_record,
    decision_record,
    meta_record,
    not_forwarded_record,
)
from aip.shared.outcomes import Outcome

SESSION = "0123456789abcdef"
_DEFAULTS = (
    ("rseq", None), ("method", None), ("dlp", []), ("monitor", None), ("queue_wait_ms", None),
    ("policy", None), ("server", None), ("pid", None), ("rule", None), ("request_id", None),
    ("mode", "enforce"),
)  # fmt: skip


def reference_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "not an object"
    if record.get("event") not in PROXY_EVENTS:
        return "event"
    session, rseq = record.get("session"), record.get("rseq")
    if not isinstance(session, str) or len(session) != 16 or session.strip("0123456789abcdef"):
        return "session"
    if type(rseq) is not int or rseq < 0:
        return "rseq"
    return None


def reference_body(record: dict[str, Any], user: str, key: bytes) -> bytes:
    """The record's line as the earlier path wrote it, without the spliced seq/prev."""
    out = dict(record)
    if record.get("event") in ("decision", "dropped_notification"):
        out.setdefault("user", None)
        if out.get("tool") is not None:
            out.setdefault("method", "tools/call")
        for k, v in _DEFAULTS:
            out.setdefault(k, v)
    if "user" in out:
        out["user"] = None
    if "user" in out and not out["user"]:
        out = {**out, "user": user}
    out = {k: v for k, v in out.items() if k not in ("seq", "prev")}
    body = ascii_json(orjson.dumps(out))
    if len(body) + 90 > CAP_CHARS:  # the line with seq/prev is over the cap: capped
        body = ascii_json(orjson.dumps(cap_record(out, key)))
    return body


def proxy_records() -> list[Any]:
    def rec(rseq: int, **kw: Any) -> dict[str, Any]:
        return decision_record(
            outcome=kw.pop("outcome", Outcome.POLICY_ALLOWED),
            session=SESSION,
            agent_id="agent",
            tool=kw.pop("tool", "read_file"),
            arguments=kw.pop("arguments", {"path": f"/tmp/{rseq}"}),
            rseq=rseq,
            **kw,
        )

    minimal = rec(3)
    for key, _ in _DEFAULTS[1:]:  # every default filled in again, in its order
        del minimal[key]
    del minimal["user"]
    policy = {"name": "p", "sha256": "0" * 64}
    return [
        rec(1),
        rec(2, user="root!"),  # a proxy's user is never written
        minimal,
        rec(4) | {"seq": 9, "prev": "y"},  # ours to say: taken out, then spliced in
        not_forwarded_record(session=SESSION, request_id=1, why="late", agent_id="a", rseq=5),
        meta_record(
            Event.POLICY_RELOAD,
            policy=policy,
            previous_policy=None,
            session=SESSION,
            agent_id="a",
            server="s",
            pid=1,
            detail="ok",
            rseq=7,
        ),
        rec(8, method="notifications/progress", tool=None, arguments=None)
        | {"event": "dropped_notification"},
        rec(9, arguments={"text": "caf\u00e9 \u202e \U0001f600 \x7f \u0000"}),
        rec(10, arguments={"text": "A" * (CAP_CHARS + 500)}),  # capped: head + tail + HMAC
        rec(11, outcome=Outcome.DLP),
        # refused, and acked all the same (they can never be written):
        "not an object",
        {"event": "genesis", "session": SESSION, "rseq": 12},
        {"event": "decision", "session": "XYZ", "rseq": 13},
        {"event": "decision", "session": SESSION, "rseq": -1},
        {"event": "decision", "session": SESSION, "rseq": "14"},
        {"event": "decision", "session": SESSION, "rseq": True},
        rec(1),  # a duplicate: acked, not written again
    ]


async def test_ingest_writes_what_the_earlier_path_wrote(tmp_path: Path) -> None:
    log = tmp_path / "aip-audit.jsonl"
    records = proxy_records()
    given = orjson.loads(orjson.dumps(records))  # what the approver decodes from a frame
    async with AuditSink(log, spool_dir=tmp_path / "spool") as sink:
        acked = sink.ingest(given)
        user = sink.log.user
    key = (tmp_path / "audit-hmac.key").read_bytes()
    want_acked = [r["rseq"] for r in records if isinstance(r, dict) and type(r["rseq"]) is int]
    assert acked == want_acked
    good = [r for r in records if reference_problem(r) is None][:-1]  # the duplicate is not
    want = [reference_body(r, user, key) for r in good]
    got = log.read_bytes().splitlines()[1:]  # after the genesis
    assert len(got) == len(want)
    for line, body in zip(got, want, strict=True):
        cut = line.rindex(b',"seq":')
        assert line[:cut] + b"}" == body
    assert sum(b"[capped: " in line for line in got) == 1
    assert sum(b'"event":"dropped_notification"' in line for line in got) == 1
    assert verify_files(chain_files(log)).ok
