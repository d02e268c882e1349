"""The proxy <-> approver channel under attack, with real processes (issue 11): a forged or
altered spool line is not ingested and is recorded; another process of the user cannot take
a session over with its id; an approver that cannot read us gets our asks denied at once."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq

from aip.approver.ctl import main as ctl
from aip.shared.protocol.messages import Error, ErrorCode, MsgType
from tests.audit_schema_check import assert_valid_log
from tests.support.approverproc import Approver, Dealer, answer_program, hello, wait_for
from tests.support.proxyproc import ProxyProcess, write_policy

SPEC = """
allowed_tools: [read_file]
tool_rules:
  - tool: write_file
    action: ask
"""


def log_records(path: Path) -> list[dict[str, Any]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return [json.loads(x) for x in data.splitlines(keepends=True) if x.endswith(b"\n")]


def session_of(proc: ProxyProcess) -> str:
    wait_for(lambda: proc.decisions(), 10, "a decision record on the proxy's stderr")
    return str(proc.decisions()[0]["session"])


@pytest.fixture
def env(folder: Path, aip_env: dict[str, str]) -> dict[str, str]:
    """Proxy and approver share the audit log's folder: spools, session keys, the log."""
    return {**os.environ, **aip_env, "AIP_AUDIT_LOG": str(folder / "audit.jsonl")}


def test_forged_and_altered_spool_lines_are_not_ingested_and_are_recorded(
    folder: Path, env: dict[str, str], make_proxy: Callable[..., ProxyProcess]
) -> None:
    policy = write_policy(folder, SPEC, "spool")
    prog = answer_program(folder, "allow")
    with Approver(folder, f"exec:{prog}", env=env).wait_ready() as approver:
        endpoint = ["--approver", approver.endpoint]
        proxy = make_proxy(policy_path=policy, env=env, extra_args=endpoint)
        proxy.initialize()
        assert "result" in proxy.call(10, "read_file", {"path": "/etc/hostname"})
        sid = session_of(proxy)
        log = approver.audit_path
        mine = lambda: [r for r in log_records(log) if r.get("session") == sid]  # noqa: E731
        wait_for(mine, 10, "the proxy's hello and first record")
    # The approver is gone: the proxy's next records wait in its spool.
    for n in (11, 12, 13):
        assert "result" in proxy.call(n, "read_file", {"path": "/etc/hostname"})
    proxy.close_stdin()
    proxy.wait()

    spool = folder / "spool" / f"{sid}.jsonl"
    lines = spool.read_bytes().splitlines(keepends=True)
    (altered,) = [i for i, line in enumerate(lines) if b'"request_id":12' in line]
    lines[altered] = lines[altered].replace(b'"policy allowed"', b'"human approved"')
    real = orjson.loads(lines[0].split(b" ", 1)[1])
    forged = {**real, "request_id": 99, "rseq": 999, "tool": "write_file"}
    forged.update(decision="allow", reason="human approved", outcome="human_approved")
    lines.append(b"%s %s\n" % (secrets.token_hex(32).encode(), orjson.dumps(forged)))
    spool.write_bytes(b"".join(lines))

    with Approver(folder, f"exec:{prog}", env=env).wait_ready():
        rejected = lambda: [r for r in log_records(log) if r["event"] == "spool_rejected"]  # noqa: E731
        wait_for(lambda: len(rejected()) == 2, 10, "two spool_rejected records")
        wait_for(lambda: not spool.exists(), 10, "the spool ingested")
    mine = [r for r in log_records(log) if r.get("session") == sid]
    ids = [r["request_id"] for r in mine if r["event"] == "decision"]
    assert sorted(ids) == [10, 11, 13]  # the authentic lines, and only those
    assert not [r for r in log_records(log) if r.get("reason") == "human approved"]
    assert [(r["line"], r["reason"]) for r in rejected()] == [
        (altered + 1, "MAC mismatch"),
        (len(lines), "MAC mismatch"),
    ]
    assert {r["file"] for r in rejected()} == {str(spool)}
    assert ctl.main(["audit", "verify", str(log)]) == 0  # the chain holds, truthfully
    assert_valid_log(log)


def test_a_session_id_read_from_status_cannot_take_the_session_over(
    folder: Path, env: dict[str, str], make_proxy: Callable[..., ProxyProcess]
) -> None:
    policy = write_policy(folder, SPEC, "bind")
    prog = answer_program(folder, "allow")
    approver = Approver(folder, f"exec:{prog}", env=env).wait_ready()
    try:
        proxy = make_proxy(
            policy_path=policy, env=env, extra_args=["--approver", approver.endpoint]
        )
        proxy.initialize()
        assert "result" in proxy.call(1, "write_file", {"path": "/tmp/x", "content": "a"})
        sid = session_of(proxy)
        with Dealer(approver.endpoint, session=sid) as thief:
            thief.send(hello(sid, key=secrets.token_hex(32)))
            refusal = thief.recv()
            assert isinstance(refusal, Error)
            assert refusal.code is ErrorCode.SESSION_BOUND
            assert refusal.about is MsgType.HELLO
            thief.ask(7)  # not bound to this connection: the approver does not take it
            answer = thief.recv()
            assert isinstance(answer, Error)
            assert answer.code is ErrorCode.HELLO_REQUIRED
        assert "refused" in approver.log()
        assert "result" in proxy.call(2, "write_file", {"path": "/tmp/x", "content": "b"})

        approver.stop()  # a restarted approver knows the key from its private state
        approver = Approver(folder, f"exec:{prog}", env=env).wait_ready()
        with Dealer(approver.endpoint, session=sid) as thief:
            thief.send(hello(sid, key=secrets.token_hex(32)))
            again = thief.recv()
            assert isinstance(again, Error)
            assert again.code is ErrorCode.SESSION_BOUND

        def reconnected() -> bool:  # the real proxy proves the key on its fresh connection
            reply = proxy.call(3, "write_file", {"path": "/tmp/x", "content": "c"})
            return "result" in reply

        wait_for(reconnected, 15, "the proxy's asks answered after the restart", poll_s=0.2)
        keys = folder / "session-keys"
        assert (keys / f"{sid}.key").stat().st_mode & 0o777 == 0o600
        assert keys.stat().st_mode & 0o777 == 0o700
    finally:
        approver.stop()


class OldApprover:
    """A ROUTER that answers every frame ``malformed`` without naming it, as an approver
    from before ``proto`` answers a hello with fields it does not know."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind(endpoint)
        self.frames: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        error = orjson.dumps({"v": 1, "type": "error", "code": "malformed", "detail": "x"})
        while not self._stop.is_set():
            if self.sock.poll(50):
                route, frame = self.sock.recv_multipart()
                self.frames.append(frame)
                self.sock.send_multipart([route, error])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
def old_approver(aip_env: dict[str, str]) -> Iterator[OldApprover]:
    old = OldApprover(f"ipc://{aip_env['XDG_RUNTIME_DIR']}/old.sock")
    yield old
    old.close()


def test_an_approver_that_cannot_read_us_gets_asks_denied_at_once(
    folder: Path,
    env: dict[str, str],
    make_proxy: Callable[..., ProxyProcess],
    old_approver: OldApprover,
) -> None:
    policy = write_policy(folder, SPEC, "old")
    endpoint = f"ipc://{env['XDG_RUNTIME_DIR']}/old.sock"
    proxy = make_proxy(policy_path=policy, env=env, extra_args=["--approver", endpoint])
    proxy.initialize()
    wait_for(lambda: old_approver.frames, 10, "the proxy's hello")
    t0 = time.monotonic()
    reply = proxy.call(5, "write_file", {"path": "/tmp/x", "content": "a"})
    took = time.monotonic() - t0
    assert reply["error"]["code"] == -32002
    assert reply["error"]["data"]["reason"] == "approver_unavailable"
    assert took < 1.0, f"{took:.3f} s: the ask waited for a deadline"  # not 60 s + 5 s
    assert "refused this proxy" in proxy.log()
