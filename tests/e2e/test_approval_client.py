"""``ZmqApprovalClient`` (the proxy side) against a real approver and against a scripted ROUTER."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import orjson
import pytest
import zmq

from aip.proxy.approval.api import AskRequest, AskResult
from aip.proxy.approval.connect import make_approval_client
from aip.proxy.approval.zmq_client import ZmqApprovalClient
from aip.proxy.audit.outbox import AuditOutbox
from aip.shared.audit.record import decision_record
from aip.shared.audit.spool import Spool
from aip.shared.audit.spool_line import LineKey
from aip.shared.outcomes import Outcome
from aip.shared.protocol.codec import encode
from aip.shared.protocol.frames import ToApprover, ToProxy, decode_to_approver
from aip.shared.protocol.messages import (
    MAX_ASK_BYTES,
    Ask,
    Cancel,
    Decision,
    Error,
    ErrorCode,
    Hello,
    MsgType,
    Welcome,
    new_nonce,
)
from tests.support.approverproc import (
    Approver,
    answer_program,
    hello,
    new_session,
    wait_for,
)

pytestmark = pytest.mark.e2e


class Result:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.results: list[AskResult] = []
        self.thread: str = ""

    def __call__(self, result: AskResult) -> None:
        self.results.append(result)
        self.thread = threading.current_thread().name
        self.done.set()

    def wait(self, timeout_s: float = 10.0) -> AskResult:
        assert self.done.wait(timeout_s), "on_done not called in time"
        assert len(self.results) == 1, self.results
        return self.results[0]


def request(request_id: str | int = 1, **arguments: object) -> AskRequest:
    return AskRequest(
        request_id=request_id,
        tool="write_file",
        arguments=dict(arguments) or {"path": "/etc/config.yaml"},
        rule="write_file ask",
        digest="b" * 64,
        size=20,
    )


def client(endpoint: str, **kw: object) -> ZmqApprovalClient:
    return ZmqApprovalClient(endpoint, hello(new_session()), **kw)  # type: ignore[arg-type]


def test_no_approver_denies_well_under_a_second(folder: Path) -> None:
    for endpoint in (f"ipc://{folder}/none/approver.sock", f"ipc://{folder}/approver.sock"):
        c = client(endpoint)
        try:
            r = Result()
            t0 = time.monotonic()
            c.ask(request(), r)
            assert r.wait().outcome is Outcome.APPROVER_UNAVAILABLE
            assert time.monotonic() - t0 < 0.2
            assert r.thread == "aip-approval"
        finally:
            c.close()


def test_socket_dir_of_another_user_is_untrusted(folder: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("chown needs root")
    run = folder / "run"
    run.mkdir(mode=0o700)
    shutil.chown(run, "nobody")
    c = client(f"ipc://{run}/approver.sock")
    try:
        r = Result()
        c.ask(request(), r)
        assert r.wait().outcome is Outcome.APPROVER_UNTRUSTED
    finally:
        c.close()


def test_allow_deny_and_info_through_a_real_approver(folder: Path) -> None:
    control = folder / "answer.txt"
    control.write_text("allow\n")
    env = {**os.environ, "AIP_TEST_ANSWER_FILE": str(control)}
    with Approver(folder, f"exec:{answer_program(folder)}", env=env).wait_ready() as approver:
        c = client(approver.endpoint)
        try:
            r = Result()
            c.ask(request(1), r)
            got = r.wait()
            assert got.outcome is Outcome.HUMAN_APPROVED
            assert got.info["human_decision"]["approved"] is True
            assert set(got.info["human_decision"]) == {
                "approved",
                "response_time_ms",
                "dialog_shown_at",
            }
            assert got.info["queue_wait_ms"] >= 0
            control.write_text("deny\n")
            r = Result()
            c.ask(request("two"), r)
            assert r.wait().outcome is Outcome.DENIED_BY_USER
            r = Result()
            t0 = time.monotonic()
            c.ask(request(3, content="A" * (MAX_ASK_BYTES + 1)), r)
            assert r.wait().outcome is Outcome.TOO_LARGE_TO_REVIEW
            assert time.monotonic() - t0 < 0.2
        finally:
            c.close()


def test_approver_killed_mid_dialog_then_restarted(folder: Path) -> None:
    record = folder / "record.jsonl"
    env = {**os.environ, "AIP_TEST_RECORD": str(record)}
    prog = answer_program(folder, "never")
    approver = Approver(folder, f"exec:{prog}", timeout_s=30, env=env).wait_ready()
    c = client(approver.endpoint)
    try:
        r = Result()
        c.ask(request(1), r)
        wait_for(record.exists, 10, "the dialog to open")
        t0 = time.monotonic()
        approver.kill()  # SIGKILL: no SHUTDOWN reply, the connection just drops
        assert r.wait().outcome is Outcome.APPROVER_UNAVAILABLE
        assert time.monotonic() - t0 < 1.0  # the monitor saw the disconnect
        allow = answer_program(folder, "allow", name="allow")
        with Approver(folder, f"exec:{allow}").wait_ready() as again:
            # The client reconnects and says hello on its own; asks made before the
            # connection is back are denied at once, never queued for later.
            deadline = time.monotonic() + 10
            while True:
                r = Result()
                c.ask(request(2), r)
                outcome = r.wait().outcome
                if outcome is Outcome.HUMAN_APPROVED:
                    break
                assert outcome is Outcome.APPROVER_UNAVAILABLE
                assert time.monotonic() < deadline, "client never reconnected"
                time.sleep(0.05)
            assert again.log().count("hello from session") >= 1
    finally:
        c.close()
        approver.kill()


def test_cancel_and_close(folder: Path) -> None:
    record = folder / "record.jsonl"
    env = {**os.environ, "AIP_TEST_RECORD": str(record)}
    prog = answer_program(folder, "never")
    with Approver(folder, f"exec:{prog}", timeout_s=30, env=env).wait_ready() as approver:
        c = client(approver.endpoint)
        r1, r2 = Result(), Result()
        c.ask(request(1), r1)
        wait_for(record.exists, 10, "the dialog to open")
        assert c.cancel(1) is True
        assert r1.wait().outcome is Outcome.CANCELLED
        assert c.cancel(1) is False
        c.ask(request(2), r2)
        c.close()
        assert r2.wait().outcome is Outcome.SHUTDOWN
        r3 = Result()
        c.ask(request(3), r3)
        assert r3.wait().outcome is Outcome.SHUTDOWN
        # The approver forgets the session (its bye, or the disconnect seen first).
        wait_for(
            lambda: "disconnected" in approver.log() or "bye from" in approver.log(), 5, "gone"
        )


class FakeApprover:
    """A scripted ROUTER: lets a test send any decision it likes."""

    def __init__(self, folder: Path, timeout_s: float = 0.3) -> None:
        run = folder / "fake"
        run.mkdir(mode=0o700)
        self.endpoint = f"ipc://{run}/approver.sock"
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind(self.endpoint)
        self.timeout_s = timeout_s

    def recv(self) -> tuple[bytes, ToApprover]:
        assert self.sock.poll(5000), "nothing from the client"
        route, body = self.sock.recv_multipart()
        return route, decode_to_approver(body)

    def send(self, route: bytes, msg: ToProxy) -> None:
        self.sock.send_multipart([route, encode(msg)])

    def welcome(self) -> tuple[bytes, Hello]:
        route, msg = self.recv()
        assert isinstance(msg, Hello)
        self.send(
            route,
            Welcome(
                session=msg.session, timeout_s=self.timeout_s, max_ask_bytes=4096, audit_path="/x"
            ),
        )
        return route, msg

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def _decision(ask: Ask, **changes: object) -> Decision:
    fields = {
        "session": ask.session,
        "request_id": ask.request_id,
        "nonce": ask.nonce,
        "digest": ask.digest,
        "outcome": Outcome.HUMAN_APPROVED,
        **changes,
    }
    return Decision(**fields)  # type: ignore[arg-type]


def test_only_a_matching_in_time_decision_counts(folder: Path) -> None:
    fake = FakeApprover(folder)
    late_allows: list[str | int] = []
    c = client(fake.endpoint, grace_s=0.2)
    c.set_late_allow_handler(late_allows.append)
    try:
        r = Result()
        c.ask(request(1), r)
        route, _ = fake.welcome()
        _, ask = fake.recv()
        assert isinstance(ask, Ask)
        fake.send(route, _decision(ask, nonce=new_nonce()))  # wrong nonce
        fake.send(route, _decision(ask, digest="c" * 64))  # other bytes
        fake.send(route, _decision(ask, request_id="1"))  # "1" is not 1
        fake.send(route, b"junk" and Error(code=ErrorCode.MALFORMED))
        t0 = time.monotonic()
        got = r.wait()
        assert got.outcome is Outcome.TIMEOUT  # welcome.timeout_s + grace, not an allow
        assert time.monotonic() - t0 < 1.0
        late = _decision(ask)
        fake.send(route, late)  # after the fallback: dropped, but recorded as not forwarded
        r2 = Result()
        c.ask(request(2), r2)
        _, ask2 = fake.recv()
        if isinstance(ask2, Cancel):  # the client withdrew the timed-out ask first
            _, ask2 = fake.recv()
        assert isinstance(ask2, Ask)
        fake.send(route, _decision(ask2, outcome=Outcome.DENIED_BY_USER))
        fake.send(route, _decision(ask2))  # a duplicate: used once
        assert r2.wait().outcome is Outcome.DENIED_BY_USER
        assert len(r.results) == 1
        assert late_allows == [1]  # the approver logged that allow: "not forwarded"
        # max_ask_bytes comes from the welcome (4096 here)
        r3 = Result()
        c.ask(request(3, content="x" * 5000), r3)
        assert r3.wait().outcome is Outcome.TOO_LARGE_TO_REVIEW
    finally:
        c.close()
        fake.close()


def test_hello_required_resends_hello_then_the_ask_once(folder: Path) -> None:
    fake = FakeApprover(folder, timeout_s=5)
    c = client(fake.endpoint)
    try:
        r = Result()
        c.ask(request(1), r)
        route, first_hello = fake.welcome()
        _, ask = fake.recv()
        assert isinstance(ask, Ask)
        fake.send(route, Error(code=ErrorCode.HELLO_REQUIRED, about=MsgType.ASK, ref=ask.nonce))
        _, again = fake.recv()
        assert again == first_hello
        _, resent = fake.recv()
        assert resent == ask
        fake.send(route, _decision(ask))
        assert r.wait().outcome is Outcome.HUMAN_APPROVED
    finally:
        c.close()
        fake.close()


def test_make_approval_client_builds_the_zmq_client(folder: Path) -> None:
    hello_dict = {
        "session": new_session(),
        "pid": os.getpid(),
        "agent_id": "a",
        "server": "s",
        "policy": {"name": "n", "sha256": "0" * 64},
    }
    made = make_approval_client(f"ipc://{folder}/approver.sock", hello_dict)
    try:
        assert isinstance(made, ZmqApprovalClient)
    finally:
        made.close()
    refused = make_approval_client("tcp://127.0.0.1:5555", hello_dict)
    r = Result()
    refused.ask(request(), r)
    assert r.wait().outcome is Outcome.APPROVER_UNAVAILABLE


def test_a_crashed_client_thread_still_answers_every_ask(folder: Path) -> None:
    c = client(f"ipc://{folder}/approver.sock")

    def boom() -> None:
        raise RuntimeError("injected")

    c._expire = boom  # type: ignore[method-assign]  # the thread's next turn fails
    r1 = Result()
    c.ask(request(1), r1)  # wakes the thread, which then dies
    assert r1.wait().outcome in (Outcome.SHUTDOWN, Outcome.APPROVER_UNAVAILABLE)
    c._thread.join(5)
    assert not c._thread.is_alive()
    r2 = Result()
    c.ask(request(2), r2)
    assert r2.wait(1).outcome is Outcome.SHUTDOWN
    c.close()


def _signed_with_mac2(spool: Spool, rseq: int) -> bool:
    """Append a record line to ``spool`` and say which MAC its line got. A whole decision
    record: the approver may receive it (every unacknowledged record is sent after a welcome)
    and the tests' audit-schema check reads its log."""
    record = decision_record(
        outcome=Outcome.POLICY_ALLOWED, session=spool.session, agent_id="a", tool="t", rseq=rseq
    )
    body = orjson.dumps(record)
    spool.append_line(rseq, body + b"\n")
    last = spool.path.read_bytes().splitlines()[-1]
    mac, _, written = last.partition(b" ")
    assert written == body
    key = LineKey(spool.key, spool.session)
    assert mac in (key.mac(rseq, body), key.mac2(rseq, body))
    return mac == key.mac2(rseq, body)


def test_the_spool_is_signed_with_blake2b_only_after_a_welcome_that_checks_it(
    folder: Path,
) -> None:
    """A real approver (PROTO 4) checks both MACs: after its welcome the proxy signs with
    BLAKE2b. One whose welcome says less (the scripted ROUTER says proto 1, as approvers
    before 4 did) gets HMAC lines: it could not ingest the others from an orphaned spool."""
    session = new_session()
    spool = Spool(session, folder / "spool")
    assert not _signed_with_mac2(spool, 1)  # before any welcome
    with Approver(folder, f"exec:{answer_program(folder, 'allow')}").wait_ready() as approver:
        c = ZmqApprovalClient(approver.endpoint, hello(session), audit=AuditOutbox(spool))
        try:
            r = Result()
            c.ask(request(1), r)
            assert r.wait().outcome is Outcome.HUMAN_APPROVED  # welcomed by now
            assert _signed_with_mac2(spool, 2)
        finally:
            c.close()
    fake = FakeApprover(folder)
    c = ZmqApprovalClient(fake.endpoint, hello(session), audit=AuditOutbox(spool))
    try:
        r = Result()
        c.ask(request(2), r)
        route, _ = fake.welcome()
        _, ask = fake.recv()
        while not isinstance(ask, Ask):  # the re-sent audit records come first
            _, ask = fake.recv()
        fake.send(route, _decision(ask))
        assert r.wait().outcome is Outcome.HUMAN_APPROVED
        assert not _signed_with_mac2(spool, 3)
        lines = spool.path.read_bytes().splitlines()  # whatever the approver had not acked
        written = [json.loads(line.partition(b" ")[2])["rseq"] for line in lines]
        assert [r["rseq"] for r in spool.pending()] == written
        assert 3 in [r["rseq"] for r in spool.pending()]  # both kinds read back
    finally:
        c.close()
        fake.close()
