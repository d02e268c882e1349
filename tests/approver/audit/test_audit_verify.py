"""Tamper evidence and ``aipctl audit verify|tail|query``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from aip.approver.audit.chain import verify_files
from aip.approver.audit.files import chain_files
from aip.approver.audit.writer import AuditLog
from aip.approver.ctl import main as ctl
from aip.shared.audit.record import decision_record
from aip.shared.audit.stamp import rfc3339
from aip.shared.outcomes import Outcome
from aip.shared.protocol.messages import HumanDecision
from tests.support.aipctl import tail_follow

SESSION = "0123456789abcdef"


def make_log(path: Path, n: int = 6, **kw: Any) -> list[Path]:
    async def write() -> None:
        async with AuditLog(path, **kw) as audit:
            for i in range(1, n + 1):
                outcome = Outcome.HUMAN_APPROVED if i % 3 == 0 else Outcome.POLICY_ALLOWED
                human = None
                if i % 3 == 0:
                    human = HumanDecision(
                        approved=True, response_time_ms=1500, dialog_shown_at=rfc3339(1000.0)
                    )
                await audit.append(
                    decision_record(
                        outcome=outcome if i != 4 else Outcome.DENIED_BY_USER,
                        session=SESSION,
                        agent_id=f"agent-{i % 2}",
                        server="fs" if i < 5 else "db",
                        tool="write_file" if i % 2 else "read_file",
                        arguments={"path": f"/tmp/{i}\u202e"},
                        human=human,
                        rseq=i,
                    )
                )

    asyncio.run(write())
    return chain_files(path)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "aip-audit.jsonl"
    make_log(path)
    return path


def rewrite(path: Path, edit: Any) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(edit(lines)))


def test_intact_log_verifies(log: Path) -> None:
    report = verify_files([log])
    assert report.ok
    assert report.records == 7


def test_edited_line_is_found(log: Path) -> None:
    rewrite(log, lambda ls: [*ls[:2], ls[2].replace(b'"allow"', b'"deny"'), *ls[3:]])
    broken = verify_files([log]).broken
    assert broken is not None
    assert broken.line == 3
    assert "edited" in broken.why


def test_deleted_line_is_found(log: Path) -> None:
    rewrite(log, lambda ls: [*ls[:3], *ls[4:]])
    broken = verify_files([log]).broken
    assert broken is not None
    assert broken.line == 4
    assert "deleted" in broken.why


def test_reordered_lines_are_found(log: Path) -> None:
    rewrite(log, lambda ls: [*ls[:3], ls[4], ls[3], *ls[5:]])
    broken = verify_files([log]).broken
    assert broken is not None
    assert broken.line == 4


def test_edit_that_also_fixes_seq_and_prev_is_found_at_the_next_line(log: Path) -> None:
    # rewriting a line's content and keeping its seq/prev still breaks the next line's prev
    def edit(ls: list[bytes]) -> list[bytes]:
        rec = orjson.loads(ls[4])
        rec["decision"] = "allow"
        return [*ls[:4], orjson.dumps(rec) + b"\n", *ls[5:]]

    rewrite(log, edit)
    broken = verify_files([log]).broken
    assert broken is not None
    assert broken.line == 5


def test_non_ascii_and_torn_lines_are_found(log: Path, tmp_path: Path) -> None:
    rewrite(log, lambda ls: [ls[0], ls[1].replace(b"write_file", b"write_fil\xc3\xa9"), *ls[2:]])
    broken = verify_files([log]).broken
    assert broken is not None
    assert "ASCII" in broken.why
    other = tmp_path / "other" / "aip-audit.jsonl"
    make_log(other)
    with other.open("ab") as fh:
        fh.write(b'{"seq":')
    broken = verify_files([other]).broken
    assert broken is not None
    assert "torn" in broken.why


def test_rotated_chain_verifies_and_a_missing_middle_file_is_found(tmp_path: Path) -> None:
    files = make_log(tmp_path / "aip-audit.jsonl", n=40, max_bytes=4096)
    assert len(files) >= 3
    assert verify_files(files).ok
    broken = verify_files([files[0], *files[2:]]).broken
    assert broken is not None
    assert broken.file == str(files[2])
    assert broken.line == 1
    # starting from a later file is allowed, and said
    later = verify_files(files[1:])
    assert later.ok
    assert "chain starts after" in later.notes[0]


# --- aipctl --------------------------------------------------------------------------------


@pytest.fixture
def env_log(log: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIP_AUDIT_LOG", str(log))
    return log


def test_ctl_verify_ok_and_broken(env_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["audit", "verify"]) == 0
    assert "OK: 7 records" in capsys.readouterr().out
    rewrite(env_log, lambda ls: [*ls[:3], *ls[4:]])
    assert ctl.main(["audit", "verify", str(env_log)]) == 1
    out = capsys.readouterr().out
    assert f"BROKEN: {env_log}:4:" in out


def test_ctl_verify_missing_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIP_AUDIT_LOG", str(tmp_path / "none.jsonl"))
    assert ctl.main(["audit", "verify"]) == 1


def test_ctl_query_filters(env_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["audit", "query", "--decision", "allow", "--reason", "human approved"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert all("human approved" in line for line in out)
    assert "\\u202e" in out[0]  # escaped, never the raw control character
    assert all(line.isascii() for line in out)
    ctl.main(["audit", "query", "--reason", "denied_by_user", "--json"])
    rows = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["rseq"] for r in rows] == [4]
    ctl.main(["audit", "query", "--tool", "read_file", "--server", "fs", "--json"])
    assert [orjson.loads(x)["rseq"] for x in capsys.readouterr().out.splitlines()] == [2, 4]
    ctl.main(["audit", "query", "--agent", "agent-1", "--since", "1h", "--json"])
    assert [orjson.loads(x)["rseq"] for x in capsys.readouterr().out.splitlines()] == [1, 3, 5]
    ctl.main(["audit", "query", "--since", "2999-01-01T00:00Z", "--json"])
    assert capsys.readouterr().out == ""
    assert ctl.main(["audit", "query", "--since", "yesterday"]) == 2


def test_ctl_tail_last_lines(env_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["audit", "tail", "-n", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert "human approved" in out[1]
    assert "(human: 1500 ms)" in out[1]


@pytest.fixture
def tail_proc(env_log: Path, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    with tail_follow(env_log, tmp_path / "tail.err") as proc:
        yield proc


def test_ctl_tail_follows_new_records(env_log: Path, tail_proc: subprocess.Popen[str]) -> None:
    assert tail_proc.stdout is not None
    assert "human approved" in tail_proc.stdout.readline()  # the last existing record

    async def more() -> None:
        async with AuditLog(env_log) as audit:
            await audit.append(
                decision_record(
                    outcome=Outcome.TIMEOUT,
                    session=SESSION,
                    agent_id="a",
                    tool="evil\x1b[2J",
                    arguments={},
                )
            )

    asyncio.run(more())
    line = tail_proc.stdout.readline()  # bounded by the pytest timeout
    assert "human approval timed out" in line
    assert "\\u001b[2J" in line
    assert "\x1b" not in line


def test_ctl_tail_follows_across_rotation(env_log: Path, tail_proc: subprocess.Popen[str]) -> None:
    assert tail_proc.stdout is not None
    tail_proc.stdout.readline()  # the last existing record

    limit = env_log.stat().st_size + 3000

    async def many() -> None:
        async with AuditLog(env_log, max_bytes=limit) as audit:
            for i in range(12):
                await audit.append(
                    decision_record(
                        outcome=Outcome.POLICY_ALLOWED,
                        session=SESSION,
                        agent_id="a",
                        tool=f"tool_{i}",
                        arguments={},
                    )
                )

    asyncio.run(many())
    assert len(chain_files(env_log)) >= 2  # it did rotate
    seen = ""
    while "tool_11" not in seen:  # bounded by the pytest timeout
        seen += tail_proc.stdout.readline()
    assert all(f"tool_{i} " in seen for i in range(12))


def test_ctl_verify_progress_only_on_a_tty(
    env_log: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aip.approver.ctl import audit as ctl_audit

    monkeypatch.setattr(ctl_audit, "PROGRESS_MIN_BYTES", 0)  # "long" for this test
    assert ctl.main(["audit", "verify"]) == 0
    assert "verifying" not in capsys.readouterr().err  # not a TTY: no progress
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert ctl.main(["audit", "verify"]) == 0
    assert "verifying... 100%" in capsys.readouterr().err
