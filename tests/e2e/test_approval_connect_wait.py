"""The first connection's wait (``CONNECT_WAIT_S``): an ask made while a slow link is still
being set up waits for it; a socket nobody listens on denies at once.

CI once denied an ask forwarded over ``ssh -R`` because the ZeroMQ handshake through the
forward took longer than the old 0.5 s wait on a loaded host. Here the slow link is a relay
that accepts at once and only starts carrying bytes a second later.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aip.proxy.approval.zmq_client import CONNECT_WAIT_S
from aip.shared.outcomes import Outcome
from tests.e2e.test_approval_client import Result, client, request
from tests.support.approverproc import Approver, answer_program

pytestmark = pytest.mark.e2e

LINK_DELAY_S = 1.0  # twice the old wait, a fifth of the new one


def _pump(a: socket.socket, b: socket.socket, stop: threading.Event) -> None:
    """Carry bytes both ways until either end closes or ``stop`` is set."""
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    while not stop.is_set():
        for key, _ in sel.select(0.05):
            data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            if not data:
                return
            key.data.sendall(data)


@contextlib.contextmanager
def slow_link(listen: Path, target: Path, delay_s: float) -> Iterator[None]:
    """A unix socket at ``listen`` that accepts one connection and, ``delay_s`` later,
    relays it to ``target`` both ways (what a forward on a loaded host looks like)."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(listen))
    server.listen(1)
    stop = threading.Event()

    def run() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            if stop.wait(delay_s):
                return
            far = socket.socket(socket.AF_UNIX)
            far.connect(str(target))
            with conn, far:
                _pump(conn, far, stop)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        server.close()
        thread.join(5)


def test_an_ask_waits_for_a_slow_first_handshake(folder: Path) -> None:
    assert CONNECT_WAIT_S > 2 * LINK_DELAY_S
    prog = answer_program(folder, "allow")
    with Approver(folder, f"exec:{prog}").wait_ready() as approver:
        near = folder / "near"
        near.mkdir(mode=0o700)
        with slow_link(
            near / "approver.sock", Path(approver.endpoint[len("ipc://") :]), LINK_DELAY_S
        ):
            c = client(f"ipc://{near}/approver.sock")
            try:
                r = Result()
                t0 = time.monotonic()
                c.ask(request(), r)  # at once: the link is not through yet
                assert r.wait().outcome is Outcome.HUMAN_APPROVED
                assert time.monotonic() - t0 >= LINK_DELAY_S
            finally:
                c.close()


def test_a_socket_nobody_listens_on_denies_at_once(folder: Path) -> None:
    stale = folder / "run"
    stale.mkdir(mode=0o700)
    path = stale / "approver.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # the file a crashed approver leaves behind
    assert os.stat(path).st_uid == os.getuid()
    c = client(f"ipc://{path}")
    try:
        r = Result()
        t0 = time.monotonic()
        c.ask(request(), r)
        assert r.wait().outcome is Outcome.APPROVER_UNAVAILABLE
        assert time.monotonic() - t0 < 0.3  # refused: no waiting out CONNECT_WAIT_S
        assert r.thread == "aip-approval"
    finally:
        c.close()
