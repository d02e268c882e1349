"""Audit readers against hostile and damaged logs, through the public ``aipctl`` command line.

Records carry attacker-reachable text (tool names, agent ids from clientInfo, arguments). The
rule: everything aipctl prints is printable ASCII (or escaped JSON with ``--json``), a line it
cannot read or show is reported and the next one is still shown, and ``verify`` never calls a
chain intact when its newest file is missing.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from aip.approver.audit.files import chain_files
from aip.approver.audit.writer import AuditLog
from aip.shared.audit.record import decision_record
from aip.shared.outcomes import Outcome
from tests.support.aipctl import aipctl, quiet_env, tail_follow
from tests.support.approverproc import Approver, Dealer, answer_program, wait_for

pytestmark = pytest.mark.e2e

PRINTABLE = re.compile(r"[\x20-\x7e\n]*")
HOSTILE = "x\x1b[2J\x1b]0;pwned\x07\u202e\u009b31m\x7f\u200b"
SESSION = "0123456789abcdef"


def write_log(path: Path, tools: list[str], max_bytes: int | None = None) -> list[Path]:
    async def write() -> None:
        kw = {} if max_bytes is None else {"max_bytes": max_bytes}
        async with AuditLog(path, **kw) as audit:
            for i, tool in enumerate(tools, 1):
                await audit.append(
                    decision_record(
                        outcome=Outcome.POLICY_ALLOWED,
                        session=SESSION,
                        agent_id="agent",
                        tool=tool,
                        arguments={"n": i},
                        rseq=i,
                    )
                )

    asyncio.run(write())
    return chain_files(path)


def append_foreign(path: Path, *records: object) -> None:
    with path.open("ab") as fh:
        for record in records:
            fh.write(record if isinstance(record, bytes) else orjson.dumps(record) + b"\n")


@pytest.fixture
def damaged(tmp_path: Path) -> Iterator[Path]:
    """A folder for logs with foreign lines: removed at the end, so the suite's audit-schema
    check (which reads every log the tests leave) does not count our forgeries."""
    folder = tmp_path / "damaged"
    folder.mkdir(mode=0o700)
    yield folder
    shutil.rmtree(folder)


def assert_printable(text: str) -> None:
    assert PRINTABLE.fullmatch(text), [c for c in text if not PRINTABLE.fullmatch(c)][:5]


def test_tail_and_query_escape_every_field_and_keep_going(damaged: Path) -> None:
    log = damaged / "aip-audit.jsonl"
    write_log(log, ["before"])
    # orjson reads up to 1024 levels but writes at most 255: showing this must not crash
    deep = b'{"event":"decision","tool":"deep","timestamp":"2026-01-01T00:00Z","arguments":'
    deep += b"[" * 300 + b"]" * 300 + b"}\n"
    append_foreign(
        log,
        {
            "event": "decision",
            "timestamp": HOSTILE,
            "decision": HOSTILE,
            "reason": HOSTILE,
            "agent_id": HOSTILE,
            "server": HOSTILE,
            "tool": HOSTILE,
            "arguments": {HOSTILE: HOSTILE},
            "human_decision": {"response_time_ms": HOSTILE},
        },
        {"event": "not_forwarded", "request_id": HOSTILE, "tool": HOSTILE, "why": HOSTILE},
        {"event": HOSTILE, HOSTILE: HOSTILE},
        deep,
        {"event": "decision", "tool": "zoneless", "timestamp": "2026-01-01T00:00:00"},
        b"not json at all " + HOSTILE.encode() + b"\n",
        b"[1, 2]\n",
        {"event": "decision", "tool": "after", "timestamp": "2026-12-01T00:00:00.000Z"},
    )
    tail = aipctl("audit", "tail", "-n", "50", env=quiet_env(AIP_AUDIT_LOG=str(log)))
    assert tail.returncode == 0, tail.stderr
    assert_printable(tail.stdout + tail.stderr)
    assert "before" in tail.stdout
    assert "after" in tail.stdout  # nothing after the damaged lines is hidden
    assert "cannot be shown" in tail.stdout  # the 300-level record, reported
    assert "unreadable line" in tail.stdout

    for args in (["--since", "3650d"], ["--json"], ["--tool", HOSTILE], []):
        query = aipctl("audit", "query", *args, env=quiet_env(AIP_AUDIT_LOG=str(log)))
        assert query.returncode == 0, query.stderr
        assert_printable(query.stdout + query.stderr)
    since = aipctl(
        "audit", "query", "--since", "3650d", "--json", env=quiet_env(AIP_AUDIT_LOG=str(log))
    )
    tools = [orjson.loads(x).get("tool") for x in since.stdout.splitlines()]
    assert "after" in tools
    assert "zoneless" not in tools  # no zone: matches no --since, and does not stop the query
    assert "skipped" in since.stderr  # the unreadable lines are named
    everything = aipctl(
        "audit", "query", "--json", env=quiet_env(AIP_AUDIT_LOG=str(log))
    ).stdout.splitlines()
    assert HOSTILE in {orjson.loads(x).get("tool") for x in everything}  # jq sees real values


def test_query_tool_matches_names_that_normalize_alike(tmp_path: Path) -> None:
    log = tmp_path / "aip-audit.jsonl"
    write_log(log, ["write_file", "Write_File", "\uff37rite_file ", "read_file"])
    done = aipctl(
        "audit", "query", "--tool", "WRITE_FILE", "--json", env=quiet_env(AIP_AUDIT_LOG=str(log))
    )
    assert done.returncode == 0, done.stderr
    assert [orjson.loads(x)["rseq"] for x in done.stdout.splitlines()] == [1, 2, 3]


def test_verify_refuses_a_chain_whose_newest_file_is_missing(tmp_path: Path) -> None:
    log = tmp_path / "aip-audit.jsonl"
    files = write_log(log, [f"tool_{i}" for i in range(40)], max_bytes=4096)
    assert len(files) >= 3
    assert files[-1] == log
    assert aipctl("audit", "verify", env=quiet_env(AIP_AUDIT_LOG=str(log))).returncode == 0
    log.unlink()
    done = aipctl("audit", "verify", env=quiet_env(AIP_AUDIT_LOG=str(log)))
    assert done.returncode == 1
    assert "BROKEN" in done.stdout
    assert "newer file is missing" in done.stdout


def test_tail_follow_after_torn_tail_repair_shows_the_recovery_not_the_torn_bytes(
    tmp_path: Path,
) -> None:
    log = tmp_path / "aip-audit.jsonl"
    write_log(log, ["first"])
    append_foreign(log, b'{"event":"decision","decision":"allow","tool":"torn_tool","reas')
    with tail_follow(log, tmp_path / "tail.err") as proc:
        assert proc.stdout is not None
        assert "first" in proc.stdout.readline()
        write_log(log, ["second"])  # opening the log repairs the torn tail first
        seen = ""
        while "second" not in seen:  # bounded by the pytest timeout
            seen += proc.stdout.readline()
        assert "recovered_tail" in seen
        assert "torn_tool" not in seen


def test_status_json_escapes_bidi_and_c1_controls(folder: Path) -> None:
    prog = answer_program(folder, "never")
    with (
        Approver(folder, f"exec:{prog}", timeout_s=30).wait_ready() as approver,
        Dealer(approver.endpoint) as proxy,
    ):
        proxy.hello(agent_id=HOSTILE, server=HOSTILE)

        def listed() -> bool:
            done = aipctl("approver", "status", "--json", "--endpoint", approver.endpoint)
            return bool(json.loads(done.stdout)["proxies"]) if done.returncode == 0 else False

        wait_for(listed, 10, "the proxy in status", poll_s=0.05)
        as_json = aipctl("approver", "status", "--json", "--endpoint", approver.endpoint)
        as_text = aipctl("approver", "status", "--endpoint", approver.endpoint)
    assert_printable(as_json.stdout + as_json.stderr)
    assert_printable(as_text.stdout + as_text.stderr)
    assert json.loads(as_json.stdout)["proxies"][0]["agent_id"] == HOSTILE
