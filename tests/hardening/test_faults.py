"""Fault injection with asserted outcomes (issue 7; security.md §8.3), for the faults the rest
of the suite does not inject already: a server that never reads stdin, a server that exits
in the middle of a response line, the approver killed at each step of its start-up, and the
audit log's disk full (RLIMIT_FSIZE; a small tmpfs when this machine lets root mount one).

Already covered elsewhere (not repeated): approver SIGKILL mid-dialog
(tests/e2e/test_approval_client.py), during an audit burst (tests/approver/test_audit_e2e.py),
proxy SIGKILL with an ask pending (tests/e2e/test_approval_e2e.py), junk and floods from the
server (tests/proxy/test_relay.py), /dev/full and a directory at the log path
(tests/approver/test_audit_log.py), clock jumps (tests/hardening/test_stateful_relay.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aip.shared.outcomes import Outcome
from aip.shared.paths import lock_path, socket_path
from tests.hardening.faultkit import UNLIMITED_ASKS, LimitedApprover, ask, client
from tests.support.aipctl import aipctl
from tests.support.approverproc import Approver, answer_program, wait_for
from tests.support.fdwait import writable
from tests.support.proxyproc import ProxyProcess, write_policy

pytestmark = pytest.mark.e2e

CHILDREN = [sys.executable, str(Path(__file__).with_name("children.py"))]
BIG_LINE = (
    json.dumps(
        {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": 1, "progress": 1, "message": "m" * 60_000},
        }
    ).encode()
    + b"\n"
)


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[list[ProxyProcess]]:
    started: list[ProxyProcess] = []
    yield started
    for proc in started:
        proc.kill()


def _fill_until_blocked(p: ProxyProcess, data: bytes, at_least: int) -> int:
    """Write to the proxy's stdin without ever blocking ourselves (a real host writes
    asynchronously): until the proxy has taken ``at_least`` bytes (deadline: a proxy still
    importing on a loaded box reads nothing for a while; a stall then once measured exactly
    the 65536 bytes of our pipe), then until it stops reading for half a second."""
    assert p.proc.stdin is not None
    fd = p.proc.stdin.fileno()
    os.set_blocking(fd, False)
    sent = 0
    deadline = time.monotonic() + 20
    while sent < len(data):
        if not writable(fd, 0.5):
            if sent >= at_least or time.monotonic() > deadline:
                break
            continue
        try:
            sent += os.write(fd, data[sent:])
        except BlockingIOError:
            continue
    return sent


def _deaf_proxy(tmp_path: Path, proxies: list[ProxyProcess], talk: int) -> ProxyProcess:
    policy = write_policy(tmp_path, "allowed_tools: [echo]\n")
    p = ProxyProcess(policy, [*CHILDREN, "deaf-talker", str(talk)], tmp_path)
    proxies.append(p)
    # More than the pipes and the relay's buffer hold: the relay ends up blocked in a write
    # to the server, which never reads. The request direction keeps the default 64 KiB
    # pipes (only the result direction is widened): our pipe, the relay's partial line, the
    # line it is writing, the server's pipe hold 2-5 lines.
    sent = _fill_until_blocked(p, BIG_LINE * 20, at_least=2 * len(BIG_LINE) + 1)
    assert 2 * len(BIG_LINE) < sent < 20 * len(BIG_LINE), sent
    return p


def test_server_that_never_reads_cannot_stop_the_other_direction(
    tmp_path: Path, proxies: list[ProxyProcess]
) -> None:
    p = _deaf_proxy(tmp_path, proxies, 100)
    seen = [p.recv(5)["params"]["n"] for _ in range(100)]
    assert seen == list(range(100))  # server -> host kept flowing, in order


def test_stdin_eof_stops_the_proxy_even_when_the_server_never_reads(
    tmp_path: Path, proxies: list[ProxyProcess]
) -> None:
    """Found here: the relay, blocked writing to the deaf server, never read the EOF, so the
    proxy ran until killed. Fixed in aip.proxy.runner (the stdin hang-up watch)."""
    p = _deaf_proxy(tmp_path, proxies, 1)
    p.close_stdin()
    try:
        code = p.proc.wait(3)  # the supervision graces are 0.3 s here (FAST_ENV)
    except subprocess.TimeoutExpired:
        pytest.fail("proxy still running 3 s after the agent closed its stdin")
    assert code == 128 + signal.SIGTERM


def test_server_exiting_in_the_middle_of_a_response(
    tmp_path: Path, proxies: list[ProxyProcess]
) -> None:
    policy = write_policy(tmp_path, "allowed_tools: [echo]\n")
    p = ProxyProcess(policy, [*CHILDREN, "half-line", "3"], tmp_path)
    proxies.append(p)
    p.initialize()
    p.send(
        {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {}},
        }
    )
    reply = p.recv_id(7)  # recv() parses every line: no half line reaches the host
    assert reply["error"]["code"] == -32603
    assert reply["error"]["data"]["reason"] == Outcome.SERVER_EXITED.value
    assert p.wait() == 3
    records = [r for r in p.decisions() if r.get("request_id") == 7]
    assert [r["outcome"] for r in records] == ["policy_allowed", "server_exited"]


def _kill_points(approver: Approver) -> Iterator[str]:
    """SIGKILL the starting approver at one point of its start-up per call."""
    sock = socket_path(approver.endpoint)
    lock = lock_path(approver.endpoint)
    yield "right after exec"
    wait_for(lock.exists, 10, "the lock file")
    yield "holding the lock"
    wait_for(sock.exists, 10, "the socket")
    yield "bound"


def test_approver_killed_at_each_step_of_its_start_up(folder: Path) -> None:
    """Each time: asks meanwhile are denied at once (never queued for later), the stale lock
    and socket do not stop the next approver, which then answers, and the chain verifies."""
    allow = f"exec:{answer_program(folder, 'allow')}"
    for point in ("right after exec", "holding the lock", "bound"):
        approver = Approver(folder, allow)
        for reached in _kill_points(approver):
            if reached == point:
                break
        approver.kill()
        c = client(approver.endpoint)
        try:
            t0 = time.monotonic()
            got = ask(c, f"dead-{point}")
            assert got.outcome is Outcome.APPROVER_UNAVAILABLE, (point, got)
            assert time.monotonic() - t0 < 2.0
        finally:
            c.close()
    with Approver(folder, allow).wait_ready() as approver:
        c = client(approver.endpoint)
        try:
            assert ask(c, "alive").outcome is Outcome.HUMAN_APPROVED
        finally:
            c.close()
        approver.stop()
    verify = aipctl("audit", "verify", str(approver.audit_path))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _asks_until_denied(endpoint: str, limit: int) -> tuple[int, Outcome]:
    """Ask until one is not approved; (approvals before it, its outcome)."""
    c = client(endpoint)
    try:
        for n in range(limit):
            got = ask(c, n)
            if got.outcome is not Outcome.HUMAN_APPROVED:
                return n, got.outcome
    finally:
        c.close()
    raise AssertionError(f"{limit} asks approved: the log never filled up")


def _human_allows(audit: Path) -> int:
    lines = [json.loads(x) for x in audit.read_text().splitlines() if x.endswith("}")]
    return sum(
        1 for r in lines if r.get("event") == "decision" and r.get("outcome") == "human_approved"
    )


def test_audit_file_size_limit_denies_asks_audit_unavailable(folder: Path) -> None:
    """RLIMIT_FSIZE (SIGXFSZ ignored): once a decision record cannot be written, asks are
    denied ``audit_unavailable``; every allow that was given is in the log."""
    allow = f"exec:{answer_program(folder, 'allow')}"
    with LimitedApprover(folder, allow, fsize=12_000).wait_ready() as approver:
        approved, outcome = _asks_until_denied(approver.endpoint, 40)
        assert outcome is Outcome.AUDIT_UNAVAILABLE
        assert approved >= 1
        assert _human_allows(approver.audit_path) == approved
        assert approver.proc.poll() is None  # still serving: a full disk is not a crash


@pytest.fixture
def small_tmpfs(folder: Path) -> Iterator[Path]:
    mnt = folder / "fs"
    mnt.mkdir(mode=0o700)
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode(errors='replace')}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def test_full_tmpfs_denies_asks_until_space_comes_back(folder: Path, small_tmpfs: Path) -> None:
    audit = small_tmpfs / "aip" / "audit.jsonl"
    audit.parent.mkdir(mode=0o700)
    env = {**os.environ, "AIP_AUDIT_LOG": str(audit)}
    allow = f"exec:{answer_program(folder, 'allow')}"
    with Approver(folder, allow, env=env, args=UNLIMITED_ASKS).wait_ready() as approver:
        c = client(approver.endpoint)
        try:
            assert ask(c, 1).outcome is Outcome.HUMAN_APPROVED, approver.log()
            filler = small_tmpfs / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:  # ENOSPC for everyone now
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
            # The log's last page may still take a record or two; then asks are denied.
            approved = 1
            for n in range(2, 20):
                outcome = ask(c, n).outcome
                if outcome is not Outcome.HUMAN_APPROVED:
                    break
                approved += 1
            assert outcome is Outcome.AUDIT_UNAVAILABLE
            assert _human_allows(audit) == approved  # every allow given is on record
            filler.unlink()

            def allowed_again() -> bool:
                return ask(c, f"again-{time.monotonic_ns()}").outcome is Outcome.HUMAN_APPROVED

            wait_for(allowed_again, 15, "asks to be allowed again", poll_s=0.2)
        finally:
            c.close()
