"""The local approver link (aip.proxy.approval.ipc_dealer) against a real libzmq ROUTER set
up as the approver sets up its own, and against peers that break the protocol."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from zmq.utils.monitor import parse_monitor_message

from aip.proxy.approval import ipc_dealer, zmtp
from aip.proxy.approval.ipc_dealer import IpcDealer
from aip.shared.outcomes import Outcome
from aip.shared.protocol.codec import encode
from aip.shared.protocol.messages import AuditAck
from tests.support.approverproc import short_dir

SESSION = "0123456789abcdef"


@pytest.fixture
def folder() -> Iterator[Path]:
    with short_dir() as path:
        yield path


_contexts: list[zmq.Context[zmq.Socket[bytes]]] = []


@pytest.fixture(autouse=True)
def own_context() -> Iterator[None]:
    """Each test's ROUTERs in a context of its own, destroyed after it (leftover sockets and
    monitors too): no state shared with the worker's other tests through Context.instance()."""
    _contexts.append(zmq.Context())
    try:
        yield
    finally:
        _contexts.pop().destroy(linger=0)


def router(endpoint: str, ivl_ms: int = 1000, timeout_ms: int = 3000) -> zmq.Socket[bytes]:
    """A ROUTER with the approver's options (aip.approver.ipc_listener)."""
    sock = _contexts[-1].socket(zmq.ROUTER)
    sock.linger = 0
    sock.heartbeat_ivl, sock.heartbeat_timeout = ivl_ms, timeout_ms
    sock.bind(endpoint)
    return sock


@contextlib.contextmanager
def linked(folder: Path) -> Iterator[tuple[zmq.Socket[bytes], IpcDealer]]:
    """A ROUTER as the approver's and our dealer, the link up."""
    endpoint = f"ipc://{folder}/a.sock"
    srv = router(endpoint)
    dealer = IpcDealer(endpoint, (1000, 3000))
    try:
        assert dealer.connect() is None
        up(dealer)
        yield srv, dealer
    finally:
        dealer.close()
        srv.close()


def route_of(srv: zmq.Socket[bytes], dealer: IpcDealer) -> bytes:
    """The ROUTER's id for our dealer (it learns it from our first message)."""
    assert dealer.send(b"hi")
    return srv.recv_multipart()[0]


def drive(dealer: IpcDealer, until: Any, timeout_s: float = 5.0) -> list[bool | None]:
    """Run the dealer as the client thread does until ``until(news)``; the link news seen."""
    news: list[bool | None] = []
    deadline = time.monotonic() + timeout_s
    while not until(news):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; link news so far: {news}"
        wake = dealer.next_wait()
        wait = left if wake is None else min(left, wake)
        events = dict(dealer.poller.poll(int(wait * 1000) + 1))
        link, _ = dealer.woken(events)
        if link:
            news += list(dealer.link_events())
    return news


def up(dealer: IpcDealer) -> None:
    assert drive(dealer, lambda n: True in n)[-1] is True


def ack(batch: int) -> bytes:
    return encode(AuditAck(session=SESSION, batch=batch, rseqs=[batch]))


def received(dealer: IpcDealer, count: int) -> list[Any]:
    got: list[Any] = []

    def enough(_: list[bool | None]) -> bool:
        got.extend(dealer.messages())
        return len(got) >= count

    drive(dealer, enough)
    return got


def test_messages_both_ways_with_a_libzmq_router(folder: Path) -> None:
    with linked(folder) as (srv, dealer):
        assert dealer.started
        assert dealer.send(b"hello")
        frames = srv.recv_multipart(copy=False)
        assert [f.bytes for f in frames[1:]] == [b"hello"]
        # what the approver's peer check reads: our uid, from SO_PEERCRED
        assert frames[1].get("Peer-Address").split(":")[1] == str(os.getuid())
        route = frames[0].bytes
        for batch in (1, 2, 3):
            srv.send_multipart([route, ack(batch)])
        assert [m.batch for m in received(dealer, 3)] == [1, 2, 3]


def test_big_messages_are_sent_whole_through_a_full_socket(folder: Path) -> None:
    """4 MB frames fill the socket: the rest waits for POLLOUT, in order, nothing lost."""
    bodies = [bytes([i]) * (4 << 20) for i in range(3)]
    with linked(folder) as (srv, dealer):
        assert all(dealer.send(b) for b in bodies)
        assert dealer._unsent  # the socket could not take it all at once
        got: list[bytes] = []

        def all_in(_: list[bool | None]) -> bool:
            while srv.poll(0):
                got.append(srv.recv_multipart()[1])
            return len(got) == len(bodies)

        drive(dealer, all_in, timeout_s=20)
        assert got == bodies


def test_the_link_stays_up_through_heartbeats(folder: Path) -> None:
    """The ROUTER pings every 100 ms and drops a peer silent for 500 ms; ours would ping only
    after 10 s, so only our PONGs keep the link. Idle for 1.5 s, it is still the same link."""
    endpoint = f"ipc://{folder}/a.sock"
    srv = router(endpoint, 100, 500)
    monitor = srv.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPTED)
    dealer = IpcDealer(endpoint, (10_000, 30_000))
    try:
        dealer.connect()
        up(dealer)
        end = time.monotonic() + 1.5
        news = drive(dealer, lambda n: time.monotonic() >= end or bool(n), timeout_s=5)
        assert news == []
        assert dealer.send(b"still here")
        assert srv.recv_multipart()[1] == b"still here"
        events = []
        while monitor.poll(0):
            events.append(parse_monitor_message(monitor.recv_multipart()))
        assert [e["event"] for e in events] == [zmq.EVENT_ACCEPTED]  # never dropped
    finally:
        dealer.close()
        monitor.close()
        srv.close()


def fake_peer(path: Path, script: Any) -> threading.Thread:
    """A listener that runs ``script(conn)`` for each connection (peers that break ZMTP)."""
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(str(path))
    lsock.listen(8)

    def serve() -> None:
        with lsock:
            lsock.settimeout(10)
            try:
                while True:
                    conn, _ = lsock.accept()
                    with conn:
                        if script(conn) == "stop":
                            return
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def silent_router(conn: socket.socket) -> str:
    """Completes the handshake, then answers nothing (a hung approver)."""
    conn.sendall(zmtp.GREETING[:32] + b"\x00" + zmtp.GREETING[33:])
    conn.sendall(zmtp.ready(b"ROUTER"))
    conn.settimeout(5)
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
    return "stop"


def test_a_silent_approver_is_a_lost_link(folder: Path) -> None:
    endpoint = f"ipc://{folder}/a.sock"
    fake_peer(folder / "a.sock", silent_router)
    dealer = IpcDealer(endpoint, (50, 200))
    try:
        dealer.connect()
        up(dealer)
        t0 = time.monotonic()
        assert drive(dealer, lambda n: False in n) == [False]
        assert 0.15 <= time.monotonic() - t0 < 2.0
        assert not dealer.send(b"x")  # no link, no queue
    finally:
        dealer.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"\0" * 64,  # not ZMTP
        zmtp.GREETING + zmtp.ready(b"PUB"),  # a socket a DEALER cannot talk to
        zmtp.GREETING + zmtp.frame_header(5) + b"early",  # a message before READY
        zmtp.GREETING[:12] + b"CURVE".ljust(20, b"\0") + zmtp.GREETING[32:],
    ],
)
def test_a_peer_that_breaks_zmtp_never_becomes_a_link(folder: Path, reply: bytes) -> None:
    endpoint = f"ipc://{folder}/a.sock"
    tries: list[int] = []

    def script(conn: socket.socket) -> str | None:
        tries.append(1)
        conn.sendall(reply)
        conn.settimeout(2)
        with contextlib.suppress(OSError):
            conn.recv(65536)
        return "stop" if len(tries) >= 3 else None

    thread = fake_peer(folder / "a.sock", script)
    dealer = IpcDealer(endpoint, (1000, 3000))
    try:
        dealer.connect()
        end = time.monotonic() + 3
        news = drive(dealer, lambda n: not thread.is_alive() or time.monotonic() > end, 5)
        assert len(tries) >= 2  # dropped, and tried again as libzmq would
        assert True not in news
    finally:
        dealer.close()


def test_nobody_listening_is_reported_at_once_and_retried(folder: Path) -> None:
    """A socket file without a listener: each attempt is refused (None), every 100 ms, and
    the link comes up once an approver binds there."""
    path = folder / "a.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    endpoint = f"ipc://{path}"
    dealer = IpcDealer(endpoint, (1000, 3000))
    srv = None
    try:
        t0 = time.monotonic()
        assert dealer.connect() is None
        assert list(dealer.link_events()) == [None]
        assert time.monotonic() - t0 < 1.0  # at once: not the client's 5 s connect grace
        news = drive(dealer, lambda n: len(n) >= 2)
        assert news[:2] == [None, None]
        path.unlink()
        srv = router(endpoint)
        up(dealer)
    finally:
        dealer.close()
        if srv is not None:
            srv.close()


def test_no_socket_file_is_unavailable(folder: Path) -> None:
    dealer = IpcDealer(f"ipc://{folder}/none.sock", (1000, 3000))
    assert dealer.connect() is Outcome.APPROVER_UNAVAILABLE
    assert not dealer.started


def test_an_approver_that_restarts_is_linked_again(folder: Path) -> None:
    endpoint = f"ipc://{folder}/a.sock"
    srv = router(endpoint)
    dealer = IpcDealer(endpoint, (1000, 3000))
    try:
        dealer.connect()
        up(dealer)
        srv.close()
        (folder / "a.sock").unlink(missing_ok=True)
        assert drive(dealer, lambda n: False in n)[0] is False
        srv = router(endpoint)
        up(dealer)
        assert dealer.send(b"again")
        assert srv.recv_multipart()[1] == b"again"
    finally:
        dealer.close()
        srv.close()


def test_an_approver_of_another_uid_gets_nothing(
    folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SO_PEERCRED names the peer's uid at connect. Not ours: the connection is closed before
    a byte is written (no greeting, so no hello with the session's spool key, no ask, no
    record), the attempt counts as refused and asks are denied approver_untrusted; once our
    own approver listens there, the next attempt links as usual."""
    path = folder / "a.sock"
    endpoint = f"ipc://{path}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    listener.settimeout(5)
    dealer = IpcDealer(endpoint, (1000, 3000))
    # os.getuid changes for the whole process, the endpoint checks too: attempt past them
    monkeypatch.setattr(ipc_dealer.os, "getuid", lambda: os.geteuid() + 4242)
    srv = None
    try:
        dealer.started = True
        for _ in range(2):  # refused again at the retry, logged once
            dealer._attempt()
            conn, _ = listener.accept()
            conn.settimeout(5)
            assert conn.recv(64) == b""  # closed without a byte
            conn.close()
            assert list(dealer.link_events()) == [None]
            assert dealer.down is Outcome.APPROVER_UNTRUSTED
            assert dealer.send(b"an ask") is False
        assert caplog.text.count("not by us") == 1
        monkeypatch.undo()
        listener.close()
        path.unlink()
        srv = router(endpoint)
        up(dealer)
        assert dealer.down is Outcome.APPROVER_UNAVAILABLE
        assert dealer.send(b"ours")
        assert srv.recv_multipart()[1] == b"ours"
    finally:
        dealer.close()
        listener.close()
        if srv is not None:
            srv.close()


def test_malformed_messages_are_dropped(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    with linked(folder) as (srv, dealer):
        route = route_of(srv, dealer)
        srv.send_multipart([route, b"{not json"])
        srv.send_multipart([route, b"part", b"two"])  # multi-part: not our protocol
        srv.send_multipart([route, ack(7)])
        assert [m.batch for m in received(dealer, 1)] == [7]
        assert "malformed" in caplog.text
        assert "multi-part" in caplog.text


def test_an_endpoint_no_longer_trusted_after_a_handshake_is_left(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check after each handshake fails (the folder changed hands meanwhile): the link is
    dropped and not made again on its own; the next connect checks the endpoint afresh."""
    with linked(folder) as (_, dealer):
        monkeypatch.setattr(ipc_dealer, "endpoint_verdict", lambda _: Outcome.APPROVER_UNTRUSTED)
        assert dealer.recheck() is Outcome.APPROVER_UNTRUSTED
        assert not dealer.started
        assert not dealer.send(b"x")
        assert dealer.next_wait() is None  # no reconnect pending
        assert dealer.connect() is Outcome.APPROVER_UNTRUSTED
        monkeypatch.undo()
        assert dealer.connect() is None  # ours again: linked again
        up(dealer)
