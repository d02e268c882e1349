"""The real approver process over a raw DEALER: answers, deadlines, faults, limits."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import zmq

from aip.shared.outcomes import Outcome
from aip.shared.protocol.codec import encode
from aip.shared.protocol.messages import (
    MAX_ASK_BYTES,
    MAX_FRAME_BYTES,
    PROTO,
    Ask,
    Bye,
    Cancel,
    Error,
    ErrorCode,
    MsgType,
    Welcome,
)
from tests.support.approverproc import (
    Approver,
    Dealer,
    answer_program,
    ask,
    hello,
    new_session,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_allow_deny_and_the_decision_line(folder: Path) -> None:
    control = folder / "answer.txt"
    control.write_text("allow\n")
    prog = answer_program(folder)
    env = {**os.environ, "AIP_TEST_ANSWER_FILE": str(control)}
    with (
        Approver(folder, f"exec:{prog}", env=env).wait_ready() as approver,
        Dealer(approver.endpoint) as d,
    ):
        welcome = d.hello()
        assert welcome.timeout_s == 5.0
        assert welcome.audit_path == str(folder / "audit.jsonl")
        sent = d.ask(7)
        got = d.decision()
        assert (got.request_id, got.nonce, got.digest) == (7, sent.nonce, sent.digest)
        assert got.outcome is Outcome.HUMAN_APPROVED
        assert got.human_decision is not None
        assert got.human_decision.approved
        control.write_text("deny\n")
        d.ask("x")
        got = d.decision()
        assert got.outcome is Outcome.DENIED_BY_USER
        assert got.human_decision is not None
        assert not got.human_decision.approved
        wait_for(lambda: len(approver.decisions()) == 2, 5, "two decision lines")
        first, second = approver.decisions()
        assert first["decision"] == "allow"
        assert first["reason"] == "human approved"
        assert first["tool"] == "write_file"
        assert first["arguments"] == {"path": "/etc/config.yaml"}
        assert set(first["human_decision"]) == {"approved", "response_time_ms", "dialog_shown_at"}
        assert first["agent_id"] == "agent-test"
        assert "timestamp" in first
        assert second["decision"] == "deny"
        assert second["reason"] == "human denied"


def test_no_answer_times_out_at_the_approvers_deadline(folder: Path) -> None:
    record = folder / "record.jsonl"
    env = {**os.environ, "AIP_TEST_RECORD": str(record)}
    prog = answer_program(folder, "never")
    with (
        Approver(folder, f"exec:{prog}", timeout_s=0.5, env=env).wait_ready() as approver,
        Dealer(approver.endpoint) as d,
    ):
        d.hello()
        t0 = time.monotonic()
        d.ask(1)
        got = d.decision()
        elapsed = time.monotonic() - t0
        assert got.outcome is Outcome.TIMEOUT
        assert 0.45 <= elapsed < 1.5
        assert got.human_decision is not None
        assert not got.human_decision.approved
        dialog = _records(record)[0]["pid"]
        wait_for(lambda: not _alive(dialog), 2, "the dialog killed at the deadline")


def test_unknown_session_gets_hello_required(folder: Path) -> None:
    prog = answer_program(folder, "allow")
    with Approver(folder, f"exec:{prog}").wait_ready() as approver, Dealer(approver.endpoint) as d:
        sent = d.ask(1)
        err = d.recv()
        assert isinstance(err, Error)
        assert (err.code, err.about, err.ref) == (
            ErrorCode.HELLO_REQUIRED,
            MsgType.ASK,
            sent.nonce,
        )
        d.hello()
        d.send(sent)
        assert d.decision().outcome is Outcome.HUMAN_APPROVED


def test_malformed_and_oversized_frames_do_not_stop_the_approver(folder: Path) -> None:
    prog = answer_program(folder, "allow")
    with Approver(folder, f"exec:{prog}").wait_ready() as approver, Dealer(approver.endpoint) as d:
        d.hello()
        for junk in (b"", b"garbage", b"[]", b'{"v":2,"type":"ask"}', b'{"v":1,"type":"hello"}'):
            d.send(junk)
            err = d.recv()
            assert isinstance(err, Error)
            assert err.code is ErrorCode.MALFORMED
        d.send(b"x" * (MAX_FRAME_BYTES + 10))  # over MAXMSGSIZE: libzmq drops the peer
        with Dealer(approver.endpoint) as other:
            other.hello()
            other.ask(5)
            assert other.decision().outcome is Outcome.HUMAN_APPROVED
        assert approver.proc.poll() is None


def test_a_refused_message_echoes_its_type_and_nonce(folder: Path) -> None:
    prog = answer_program(folder, "allow")
    with Approver(folder, f"exec:{prog}").wait_ready() as approver, Dealer(approver.endpoint) as d:
        d.hello()
        newer = {**json.loads(encode(ask(d.session))), "a_later_field": 1}
        d.send(json.dumps(newer).encode())
        err = d.recv()
        assert isinstance(err, Error)
        assert (err.code, err.about, err.ref) == (ErrorCode.MALFORMED, MsgType.ASK, newer["nonce"])
        assert "a_later_field" in err.detail


def test_hello_proto_outside_the_approvers_range_is_refused_clearly(folder: Path) -> None:
    prog = answer_program(folder, "allow")
    with Approver(folder, f"exec:{prog}").wait_ready() as approver, Dealer(approver.endpoint) as d:
        newer = {**json.loads(encode(hello(d.session))), "proto": PROTO + 1, "later": True}
        older = {k: v for k, v in json.loads(encode(hello(d.session))).items() if k != "key"}
        older["proto"] = 1  # as a proxy from before ``proto`` (which sent neither)
        for frame in (json.dumps(newer).encode(), json.dumps(older).encode()):
            d.send(frame)
            err = d.recv()
            assert isinstance(err, Error)
            assert (err.code, err.about) == (ErrorCode.VERSION, MsgType.HELLO)
            assert "upgrade the" in err.detail
        assert isinstance(d.hello(), Welcome)  # our own proto is welcome
        assert d.hello().proto == PROTO


def test_an_ask_over_max_ask_bytes_is_denied_without_a_dialog(folder: Path) -> None:
    record = folder / "record.jsonl"
    prog = answer_program(folder, "allow")
    env = {**os.environ, "AIP_TEST_RECORD": str(record)}
    with (
        Approver(folder, f"exec:{prog}", env=env).wait_ready() as approver,
        Dealer(approver.endpoint) as d,
    ):
        d.hello()
        d.ask(1, content="A" * (MAX_ASK_BYTES + 1))
        assert d.decision().outcome is Outcome.TOO_LARGE_TO_REVIEW
        assert not record.exists()


def test_second_approver_is_refused_and_the_first_keeps_serving(folder: Path) -> None:
    prog = answer_program(folder, "allow")
    with Approver(folder, f"exec:{prog}").wait_ready() as first:
        second = Approver(folder, f"exec:{prog}", endpoint=first.endpoint)
        assert second.proc.wait(10) == 1
        assert "already" in second.log()
        assert "not starting a second one" in second.log()
        with Dealer(first.endpoint) as d:
            d.hello()
            d.ask(1)
            assert d.decision().outcome is Outcome.HUMAN_APPROVED


def test_sigterm_denies_everything_pending_with_shutdown(folder: Path) -> None:
    prog = answer_program(folder, "never")
    with (
        Approver(folder, f"exec:{prog}", timeout_s=30).wait_ready() as approver,
        Dealer(approver.endpoint) as d,
    ):
        d.hello()
        for i in range(3):
            d.ask(i)
        d.hello()  # one connection is served in order: this welcome comes after the asks
        t0 = time.monotonic()
        approver.proc.send_signal(signal.SIGTERM)
        outcomes = {d.decision().outcome for _ in range(3)}
        assert outcomes == {Outcome.SHUTDOWN}
        assert time.monotonic() - t0 < 1.5
        assert approver.proc.wait(5) == 0


def test_cancel_and_disconnect_close_the_open_dialog(folder: Path) -> None:
    record = folder / "record.jsonl"
    prog = answer_program(folder, "never")
    env = {**os.environ, "AIP_TEST_RECORD": str(record)}
    with Approver(folder, f"exec:{prog}", timeout_s=30, env=env).wait_ready() as approver:
        with Dealer(approver.endpoint) as d:
            d.hello()
            sent = d.ask(1)
            wait_for(lambda: len(_records(record)) == 1, 5, "dialog open")
            pid = _records(record)[0]["pid"]
            d.send(Cancel(session=d.session, request_id=1, nonce=sent.nonce))
            wait_for(lambda: not _alive(pid), 5, "dialog killed after cancel")
            assert d.nothing(0.2)  # a cancelled ask gets no reply
            d.ask(2)
            wait_for(lambda: len(_records(record)) == 2, 5, "second dialog open")
            pid = _records(record)[1]["pid"]
        # The DEALER is gone (as if the proxy was killed): the dialog goes too.
        wait_for(lambda: not _alive(pid), 5, "dialog killed after disconnect")
        assert "disconnected" in approver.log()


def test_no_display_denies_at_once_and_says_so(folder: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    with Approver(folder, "auto", env=env).wait_ready() as approver, Dealer(approver.endpoint) as d:
        assert "every ask will be denied" in approver.log()
        d.hello()
        t0 = time.monotonic()
        d.ask(1)
        got = d.decision()
        assert got.outcome is Outcome.NO_DISPLAY
        assert got.human_decision is None
        assert time.monotonic() - t0 < 0.5
        wait_for(lambda: approver.decisions(), 5, "decision line")
        assert approver.decisions()[0]["reason"] == "approval unavailable: no_display"


def test_peer_of_another_uid_is_refused(folder: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to connect as another user")
    prog = answer_program(folder, "allow")
    with Approver(folder, f"exec:{prog}").wait_ready() as approver:
        (folder / "run").chmod(0o711)  # test only: let 'nobody' reach the socket
        sock = folder / "run" / "approver.sock"
        sock.chmod(0o777)
        folder.chmod(0o711)
        pid = os.fork()  # the interpreter lives under /root: fork, then drop to nobody
        if pid == 0:  # pragma: no cover - child
            code = 2
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                ctx = zmq.Context()
                s = ctx.socket(zmq.DEALER)
                s.linger = 0
                s.connect(approver.endpoint)
                s.send(encode(Bye(session="0123456789abcdef")))
                s.send(b"garbage")
                code = 0 if s.poll(1000) == 0 else 1  # no reply, not even "malformed"
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        wait_for(lambda: "refused peer uid=65534" in approver.log(), 5, "refusal logged")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_router_sees_peer_credentials(folder: Path) -> None:
    """The approver's uid check relies on libzmq's Peer-Address (uid:gid:pid) on ipc."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    try:
        router.bind(f"ipc://{folder}/peer.sock")
        dealer.connect(f"ipc://{folder}/peer.sock")
        dealer.send(b"hi")
        assert router.poll(5000)
        frames = router.recv_multipart(copy=False)
        _host, uid, gid, pid = str(frames[-1].get("Peer-Address")).rsplit(":", 3)
        assert (int(uid), int(gid), int(pid)) == (os.getuid(), os.getgid(), os.getpid())
    finally:
        dealer.close(0)
        router.close(0)
        ctx.term()
    _ = new_session


def test_socket_is_private_and_a_stolen_endpoint_stops_the_approver(folder: Path) -> None:
    prog = answer_program(folder, "allow")
    with Approver(folder, f"exec:{prog}").wait_ready() as approver:
        run = folder / "run"
        assert run.stat().st_mode & 0o777 == 0o700
        assert (run / "approver.sock").stat().st_mode & 0o077 == 0  # umask 077 before bind
        assert (run / "approver.sock.lock").read_text().strip() == str(approver.proc.pid)
        ctx = zmq.Context()
        thief = ctx.socket(zmq.ROUTER)
        try:
            thief.bind(approver.endpoint)  # libzmq unlinks the path and binds anew
            assert approver.proc.wait(10) == 1
            assert "was replaced by another process" in approver.log()
        finally:
            thief.close(0)
            ctx.term()


def test_the_approver_redacts_builtin_secrets_before_display(folder: Path) -> None:
    record = folder / "record.jsonl"
    env = {**os.environ, "AIP_TEST_RECORD": str(record)}
    prog = answer_program(folder, "deny")
    with (
        Approver(folder, f"exec:{prog}", env=env).wait_ready() as approver,
        Dealer(approver.endpoint) as d,
    ):
        d.hello()
        d.ask(1, key="AKIAIOSFODNN7EXAMPLE", path="/etc/x")
        assert d.decision().outcome is Outcome.DENIED_BY_USER
    request = _records(record)[0]["request"]
    assert "AKIAIOSFODNN7EXAMPLE" not in json.dumps(request)
    assert request["arguments"]["key"] == '"[REDACTED:aws-access-key]"'
    assert "[REDACTED:aws-access-key]" in request["text"]


def test_queue_caps_deny_at_once(folder: Path) -> None:
    prog = answer_program(folder, "never")
    args = ["--max-pending-session", "2", "--max-pending", "3", "--ask-burst", "100"]
    with (
        Approver(folder, f"exec:{prog}", timeout_s=30, args=args).wait_ready() as approver,
        Dealer(approver.endpoint) as a,
        Dealer(approver.endpoint) as b,
    ):
        a.hello()
        b.hello()
        a.ask(1)
        a.ask(2)
        t0 = time.monotonic()
        a.ask(3)  # over the per-session cap
        got = a.decision()
        assert (got.request_id, got.outcome) == (3, Outcome.QUEUE_FULL)
        b.ask(4)
        b.ask(5)  # over the overall cap
        got = b.decision()
        assert (got.request_id, got.outcome) == (5, Outcome.QUEUE_FULL)
        assert time.monotonic() - t0 < 1.0


def test_fuzzed_frames_leave_the_approver_serving(folder: Path) -> None:
    import random

    rng = random.Random(1234)
    ask_json = encode(
        Ask(
            session="0123456789abcdef",
            request_id=1,
            nonce="0" * 32,
            digest="a" * 64,
            tool="t",
            arguments={},
            rule="r",
            size=1,
        )
    )
    prog = answer_program(folder, "allow")
    with Approver(folder, f"exec:{prog}").wait_ready() as approver, Dealer(approver.endpoint) as d:
        d.hello()
        for _ in range(300):
            kind = rng.randrange(4)
            if kind == 0:
                frame = rng.randbytes(rng.randrange(0, 200))
            elif kind == 1:  # a valid message with bytes flipped
                raw = bytearray(ask_json)
                for _ in range(3):
                    raw[rng.randrange(len(raw))] = rng.randrange(256)
                frame = bytes(raw)
            elif kind == 2:
                frame = json.dumps(
                    {
                        "v": 1,
                        "type": rng.choice(["ask", "hello", "audit", "bye"]),
                        "session": rng.choice([d.session, 5, None, "x" * 16]),
                    }
                ).encode()
            else:  # several frames in one message
                d.sock.send_multipart([b"a", b"b", rng.randbytes(10)])
                continue
            d.send(frame)
        with Dealer(approver.endpoint) as other:
            other.hello()
            other.ask(9)
            assert other.decision().outcome is Outcome.HUMAN_APPROVED
        assert approver.proc.poll() is None
