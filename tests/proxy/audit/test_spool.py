"""The proxy's audit spool: private file, order, ack/compaction, orphan claiming."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aip.shared.audit.spool import Spool, claim_orphans, read_orphan, release_orphan

SESSION = "0123456789abcdef"


def rec(rseq: int) -> dict[str, Any]:
    return {"event": "decision", "session": SESSION, "rseq": rseq, "tool": "t\u202e"}


def test_append_read_back_in_order_private(tmp_path: Path) -> None:
    spool = Spool(SESSION, tmp_path / "spool")
    spool.append([rec(1), rec(2)])
    spool.append([rec(3)])
    assert [r["rseq"] for r in spool.pending()] == [1, 2, 3]
    assert spool.pending()[0]["tool"] == "t\u202e"
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(spool.directory.stat().st_mode) == 0o700
    spool.close()


def test_ack_compacts_and_close_removes_empty(tmp_path: Path) -> None:
    spool = Spool(SESSION, tmp_path)
    spool.append([rec(i) for i in range(1, 6)])
    spool.ack([1, 2])
    assert [r["rseq"] for r in spool.pending()] == [3, 4, 5]
    spool.append([rec(6)])  # appends go to the compacted file
    spool.ack([3, 4, 5, 6])
    assert spool.pending() == []
    spool.close()
    assert not spool.path.exists()


def test_acks_of_runs_and_of_scattered_rseqs_agree(tmp_path: Path) -> None:
    """An ack of a batch in order takes the one-range path; any other ack (out of order,
    partly acked before, unknown or non-int rseqs, bools) the per-record path: the same
    records stay pending either way."""
    spool = Spool(SESSION, tmp_path)
    spool.append([rec(i) for i in range(1, 41)])
    model = set(range(1, 41))
    acks: list[list[Any]] = [
        [1, 2, 3], [4, 5, 6, 7], [10, 11], [9, 8], [12, 12], [13, 14, 99], [15, True],
        [0, 1, True], [16, "17"], [20, 21, 22], [21, 22, 23], [30, 31, 32], [],
    ]  # fmt: skip
    for ack in acks:
        spool.ack(ack)
        model -= {r for r in ack if type(r) is int}
        assert [r["rseq"] for r in spool.pending()] == sorted(model)
    spool.ack(list(range(1, 41)))
    assert spool.pending() == []
    assert spool.path.stat().st_size == 0  # every record acknowledged: cut to zero
    spool.close()


def test_non_empty_spool_survives_close(tmp_path: Path) -> None:
    spool = Spool(SESSION, tmp_path)
    spool.append([rec(1)])
    spool.close()
    stranger = Spool(SESSION, tmp_path)
    assert stranger.pending() == []  # another key: nothing opens
    stranger.close()
    assert [r["rseq"] for r in Spool(SESSION, tmp_path, key=spool.key).pending()] == [1]


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    spool = Spool(SESSION, tmp_path)
    spool.append([rec(1)])
    with spool.path.open("ab") as fh:
        fh.write(b'{"event":"deci')
    assert [r["rseq"] for r in spool.pending()] == [1]
    spool.close()


def test_unsafe_spool_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / f"{SESSION}.jsonl").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):  # noqa: PT011 - ELOOP: never follow a planted link
        Spool(SESSION, tmp_path).append([rec(1)])
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    theirs = other / f"{SESSION}.jsonl"
    theirs.write_bytes(b"")
    os.chmod(theirs, 0o600)
    os.chown(theirs, 65534, 65534)  # root-proof: a file of nobody
    if os.getuid() == 0 or theirs.stat().st_uid != os.getuid():
        with pytest.raises(PermissionError):
            Spool(SESSION, other).append([rec(1)])


HOLDER = r"""
import sys
from pathlib import Path
from aip.shared.audit.spool import Spool
spool = Spool(sys.argv[1], Path(sys.argv[2]))
spool.append([{"event": "decision", "session": sys.argv[1], "rseq": 1}])
print("ready", flush=True)
sys.stdin.read()
"""


def test_orphans_are_claimed_only_when_their_proxy_is_gone(tmp_path: Path) -> None:
    dead = Spool("aaaaaaaaaaaaaaaa", tmp_path)
    dead.append([rec(1), rec(2)])
    dead.close()  # the proxy exited with records left
    with subprocess.Popen(  # the with closes its pipes
        [sys.executable, "-c", HOLDER, "bbbbbbbbbbbbbbbb", str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as live:
        try:
            assert live.stdout is not None
            assert live.stdout.readline().strip() == "ready"
            claimed = claim_orphans(tmp_path)
            assert [p.name for p, _ in claimed] == ["aaaaaaaaaaaaaaaa.jsonl"]
            path, fd = claimed[0]
            assert len(read_orphan(fd)) == 2
            release_orphan(path, fd, ingested=True)
            assert not path.exists()
            assert (tmp_path / "bbbbbbbbbbbbbbbb.jsonl").exists()
        finally:
            live.kill()
            live.wait(timeout=10)
    claimed = claim_orphans(tmp_path)  # now the holder is gone too
    assert [p.name for p, _ in claimed] == ["bbbbbbbbbbbbbbbb.jsonl"]
    for path, fd in claimed:
        release_orphan(path, fd, ingested=False)
    assert (tmp_path / "bbbbbbbbbbbbbbbb.jsonl").exists()
