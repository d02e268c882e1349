"""The audit writer: chain, modes, reopen, torn tail, rotation, group commit, durable, dedup."""

from __future__ import annotations

import asyncio
import itertools
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from aip.approver.audit.chain import verify_files
from aip.approver.audit.files import FileOps, chain_files
from aip.approver.audit.writer import AuditLog, AuditUnavailable
from aip.shared.audit.record import decision_record
from aip.shared.outcomes import Outcome
from tests.audit_schema_check import assert_valid_log

SESSION = "0123456789abcdef"


def rec(rseq: int | None = None, session: str = SESSION, **kw: Any) -> dict[str, Any]:
    return decision_record(
        outcome=kw.pop("outcome", Outcome.POLICY_ALLOWED),
        session=session,
        agent_id="agent",
        tool="read_file",
        arguments={"path": f"/tmp/{rseq}"},
        rseq=rseq,
        **kw,
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


class CountingOps(FileOps):
    def __init__(self) -> None:
        self.syncs = 0
        self.writes = 0
        self.fail_sync = False
        self.short_write = False

    def write(self, fd: int, data: bytes) -> int:
        self.writes += 1
        if self.short_write:
            return super().write(fd, data[: len(data) // 2])
        return super().write(fd, data)

    def sync(self, fd: int) -> None:
        if self.fail_sync:
            raise OSError(5, "Input/output error (injected)")
        self.syncs += 1
        super().sync(fd)


async def wait_for(predicate: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polls writer state, bounded
            await asyncio.sleep(0.005)


async def test_new_log_genesis_chain_modes(tmp_path: Path) -> None:
    path = tmp_path / "state" / "aip" / "aip-audit.jsonl"
    async with AuditLog(path) as audit:
        assert audit.available
        for i in range(1, 6):
            await audit.append(rec(i))
    records = lines(path)
    assert records[0]["event"] == "genesis"
    assert records[0]["prev_file"] is None
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(r["user"] for r in records[1:])  # filled with our user name
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert verify_files([path]).ok
    assert_valid_log(path)


async def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "aip-audit.jsonl"
    async with AuditLog(path) as audit:
        await audit.append(rec(1))
    async with AuditLog(path) as audit:
        assert audit.seq == 2
        await audit.append(rec(2))
    assert [r["event"] for r in lines(path)] == ["genesis", "decision", "decision"]
    assert verify_files([path]).ok


@pytest.mark.parametrize("torn", [b'{"timestamp":"2026-', b"garbage line\n"])
async def test_torn_tail_is_repaired_with_a_record(tmp_path: Path, torn: bytes) -> None:
    path = tmp_path / "aip-audit.jsonl"
    async with AuditLog(path) as audit:
        await audit.append(rec(1))
    with path.open("ab") as fh:
        fh.write(torn)
    assert not verify_files([path]).ok
    async with AuditLog(path) as audit:
        await audit.append(rec(2))
    records = lines(path)
    assert [r["event"] for r in records] == ["genesis", "decision", "recovered_tail", "decision"]
    repair = records[2]
    assert repair["discarded_bytes"] == len(torn)
    assert (tmp_path / repair["side_file"]).read_bytes() == torn
    assert verify_files([path]).ok
    assert_valid_log(path)


async def test_a_file_that_is_not_an_audit_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "aip-audit.jsonl"
    path.write_bytes(b'{"seq": 1, "hello": "not ours"}\n')
    async with AuditLog(path, probe_interval_s=60) as audit:
        assert not audit.available
        assert "genesis" in str(audit.error)
    assert path.read_bytes() == b'{"seq": 1, "hello": "not ours"}\n'


async def test_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "aip-audit.jsonl"
    async with AuditLog(path) as first, AuditLog(path, probe_interval_s=60) as second:
        assert first.available
        assert not second.available
        assert "another process" in str(second.error)


async def test_rotation_keeps_the_chain_across_files(tmp_path: Path) -> None:
    path = tmp_path / "aip-audit.jsonl"
    async with AuditLog(path, max_bytes=4096) as audit:
        for i in range(1, 41):
            await audit.append(rec(i))
    files = chain_files(path)
    assert len(files) >= 3
    assert files[-1] == path
    for old in files[:-1]:
        assert lines(old)[-1]["event"] == "rotate"
        assert old.stat().st_size <= 4096
    for older, newer in itertools.pairwise(files):
        genesis = lines(newer)[0]
        assert genesis["event"] == "genesis"
        assert genesis["prev_file"] == older.name
    report = verify_files(files)
    assert report.ok, report.broken
    assert report.records == sum(len(lines(f)) for f in files)
    for f in files:
        assert_valid_log(f)
    decisions = [r for f in files for r in lines(f) if r["event"] == "decision"]
    assert [r["rseq"] for r in decisions] == list(range(1, 41))


async def test_durable_append_returns_after_fsync(tmp_path: Path) -> None:
    ops = CountingOps()
    async with AuditLog(tmp_path / "a.jsonl", ops=ops, commit_interval_s=30) as audit:
        before = ops.syncs
        await audit.append(rec(1))
        assert ops.syncs == before  # group commit: not synced per record
        await audit.append(rec(2, outcome=Outcome.HUMAN_APPROVED), durable=True)
        assert ops.syncs == before + 1


async def test_group_commit_by_interval_and_by_count(tmp_path: Path) -> None:
    ops = CountingOps()
    async with AuditLog(tmp_path / "a.jsonl", ops=ops, commit_interval_s=0.02) as audit:
        before = ops.syncs
        await audit.append(rec(1))
        await wait_for(lambda: ops.syncs > before)  # within the interval, off the request
    ops = CountingOps()
    async with AuditLog(
        tmp_path / "b.jsonl", ops=ops, commit_interval_s=30, commit_records=10
    ) as audit:
        before = ops.syncs
        for i in range(9):
            await audit.append(rec(i + 1))
        await asyncio.sleep(0)
        assert ops.syncs == before  # below the count and within the (long) interval
        await audit.append(rec(10))
        await wait_for(lambda: ops.syncs == before + 1, timeout_s=5)  # not 30 s


async def test_dedup_by_session_and_rseq_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "aip-audit.jsonl"
    other = "fedcba9876543210"
    async with AuditLog(path) as audit:
        assert audit.append_proxy_records([rec(1), rec(2), rec(1, session=other)]) == (3, 0)
        assert audit.append_proxy_records([rec(2), rec(3)]) == (1, 1)
    async with AuditLog(path) as audit:  # rebuilt from the tail
        assert audit.seen(SESSION, 3)
        assert audit.seen(other, 1)
        assert not audit.seen(other, 2)
        assert audit.append_proxy_records([rec(1), rec(2), rec(3), rec(4)]) == (1, 3)
    rseqs = [(r["session"], r["rseq"]) for r in lines(path) if r["event"] == "decision"]
    assert sorted(rseqs) == sorted({*rseqs})  # no pair twice


async def test_dedup_window_assumes_older_records_written(tmp_path: Path) -> None:
    path = tmp_path / "aip-audit.jsonl"
    async with AuditLog(path, max_bytes=3000) as audit:
        for i in range(1, 30):
            audit.append_proxy_records([rec(i)])
    async with AuditLog(path) as audit:  # the current file holds only the last few
        assert audit.seen(SESSION, 1)
        assert audit.seen(SESSION, 29)
        assert not audit.seen(SESSION, 30)


# --- failures (root-proof: /dev/full, a directory at the path, injected faults) -----------


async def test_enospc_makes_it_unavailable_then_it_recovers(tmp_path: Path) -> None:
    path = tmp_path / "aip-audit.jsonl"
    async with AuditLog(path, probe_interval_s=0.01) as audit:
        await audit.append(rec(1))
        full = os.open("/dev/full", os.O_WRONLY)
        try:
            os.dup2(full, audit._fd)  # the open log now answers ENOSPC
        finally:
            os.close(full)
        with pytest.raises(AuditUnavailable, match="No space"):
            await audit.append(rec(2), durable=True)
        # the probe reopens the real file; the chain continues from its tail
        await wait_for(lambda: audit.available)
        await audit.append(rec(3), durable=True)
    assert [r.get("rseq") for r in lines(path)] == [None, 1, 3]
    assert verify_files([path]).ok


async def test_directory_at_log_path_denies_until_removed(tmp_path: Path) -> None:
    path = tmp_path / "aip-audit.jsonl"
    path.mkdir()
    async with AuditLog(path, probe_interval_s=0.01) as audit:
        assert not audit.available
        with pytest.raises(AuditUnavailable):
            await audit.append(rec(1), durable=True)
        with pytest.raises(AuditUnavailable):
            audit.append_proxy_records([rec(2)])
        await audit.append(rec(None, outcome=Outcome.AUDIT_UNAVAILABLE))  # kept in memory
        path.rmdir()
        await wait_for(lambda: audit.available)
        await audit.append(rec(3), durable=True)
    records = lines(path)
    assert [r["event"] for r in records] == ["genesis", "decision", "decision"]
    assert records[1]["outcome"] == "audit_unavailable"  # the backlog was written first
    assert verify_files([path]).ok


async def test_failed_fsync_fails_the_durable_append(tmp_path: Path) -> None:
    ops = CountingOps()
    async with AuditLog(tmp_path / "a.jsonl", ops=ops, probe_interval_s=0.01) as audit:
        ops.fail_sync = True
        with pytest.raises(AuditUnavailable, match="fsync failed"):
            await audit.append(rec(1), durable=True)
        assert not audit.available or audit.error is None
        ops.fail_sync = False
        await wait_for(lambda: audit.available)
        await audit.append(rec(2), durable=True)
    assert verify_files([tmp_path / "a.jsonl"]).ok


async def test_short_write_is_cut_back(tmp_path: Path) -> None:
    ops = CountingOps()
    path = tmp_path / "a.jsonl"
    async with AuditLog(path, ops=ops, probe_interval_s=0.01) as audit:
        await audit.append(rec(1))
        size = path.stat().st_size
        ops.short_write = True
        with pytest.raises(AuditUnavailable, match="short write"):
            await audit.append(rec(2))
        assert path.stat().st_size == size
        ops.short_write = False
        await wait_for(lambda: audit.available)
        await audit.append(rec(3))
    assert verify_files([path]).ok


FSIZE_SCRIPT = r"""
import asyncio, json, resource, signal, sys
from pathlib import Path
from aip.approver.audit.writer import AuditLog, AuditUnavailable
from aip.shared.audit.record import decision_record
from aip.shared.outcomes import Outcome

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
path = Path(sys.argv[1])

async def main():
    async with AuditLog(path, probe_interval_s=60) as audit:
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 3000, hard))
        written = 0
        try:
            for i in range(1000):
                rec = decision_record(outcome=Outcome.POLICY_ALLOWED, session="0123456789abcdef",
                                      agent_id="a", tool="t", arguments={"i": i}, rseq=i + 1)
                await audit.append(rec)
                written += 1
        except AuditUnavailable as exc:
            print(json.dumps({"written": written, "error": str(exc),
                              "available": audit.available}))

asyncio.run(main())
"""


def test_rlimit_fsize_makes_it_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "aip-audit.jsonl"
    out = subprocess.run(
        [sys.executable, "-c", FSIZE_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result = orjson.loads(out.stdout)
    assert 0 < result["written"] < 1000
    assert result["available"] is False
    assert "short write" in result["error"] or "File too large" in result["error"]
    report = verify_files([path])  # the partial record was cut back: the chain is whole
    assert report.ok, report.broken
    assert report.records == result["written"] + 1


async def test_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)  # root-proof: owned by nobody
    if theirs.stat().st_uid == os.getuid():
        pytest.skip("cannot give the directory away")
    async with AuditLog(theirs / "aip-audit.jsonl", probe_interval_s=60) as audit:
        assert not audit.available
        assert "not by us" in str(audit.error)
        with pytest.raises(AuditUnavailable):
            await audit.append(rec(1), durable=True)


def test_seen_pairs_in_and_out_of_order_and_bounded() -> None:
    from aip.approver.audit.dedup import SeenPairs

    seen = SeenPairs(max_sessions=3)
    for session in "abcde":
        for rseq in (1, 2, 3):
            seen.add(session, rseq)
    assert ("e", 3) in seen
    assert ("a", 1) not in seen  # least recently written sessions are forgotten
    seen.add("e", 6)
    assert ("e", 6) in seen
    assert ("e", 5) not in seen
    seen.add("e", 5)
    seen.add("e", 4)
    assert all(("e", r) in seen for r in range(1, 7))


async def _crash_during_rotation(path: Path, *, renamed: bool) -> Path:
    """A log whose writer died right after its rotate record (and maybe the rename)."""
    from aip.approver.audit.files import rotated_path
    from aip.shared.audit.record import Event, meta_record

    async with AuditLog(path) as audit:
        await audit.append(rec(1))
        target = rotated_path(path, audit.seq + 1)
        rotate = meta_record(Event.ROTATE, next_file=path.name, rotated_to=target.name)
        audit._write_line(audit._line(rotate, audit.seq + 1, audit._last_hash))
    if renamed:
        os.rename(path, target)
    return target


@pytest.mark.parametrize("renamed", [False, True])
async def test_a_crash_during_rotation_is_finished_at_start(tmp_path: Path, renamed: bool) -> None:
    path = tmp_path / "aip-audit.jsonl"
    target = await _crash_during_rotation(path, renamed=renamed)
    async with AuditLog(path) as audit:
        await audit.append(rec(2))
    assert chain_files(path) == [target, path]
    assert lines(target)[-1]["event"] == "rotate"
    genesis = lines(path)[0]
    assert genesis["event"] == "genesis"
    assert genesis["prev_file"] == target.name
    report = verify_files([target, path])
    assert report.ok, report.broken
    assert [r.get("rseq") for r in lines(path)] == [None, 2]


def test_a_side_file_is_whole_or_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The torn bytes' copy is written under a fresh name and linked when whole: a failure
    (or a kill) while writing leaves no empty ``.torn-*`` copy of bytes the log then drops;
    an earlier copy is never replaced."""
    from aip.approver.audit.files import write_side_file

    side = tmp_path / "audit.jsonl.torn-1"

    def fail(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "write", fail)
        with pytest.raises(OSError, match="No space"):
            write_side_file(side, b'{"torn')
    assert list(tmp_path.iterdir()) == []
    write_side_file(side, b'{"torn')
    assert side.read_bytes() == b'{"torn'
    assert stat.S_IMODE(side.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_side_file(side, b"other")
    assert side.read_bytes() == b'{"torn'
