"""The stateful test's session: tests/support/sessionkit.py's in-process session with the
real ``ZmqApprovalClient``, talking to a scripted ROUTER, with the client's monotonic clock
injected (so deadlines and clock jumps are the test's to decide). Every wait has a deadline;
nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from aip.proxy.approval.zmq_client import ZmqApprovalClient
from aip.proxy.relay.asks import Asks
from aip.shared.policy.load import load_policy_text
from aip.shared.protocol.codec import encode
from aip.shared.protocol.frames import ToProxy, decode_to_approver
from aip.shared.protocol.messages import (
    MAX_ASK_BYTES,
    Ask,
    Audit,
    AuditAck,
    Hello,
    PolicyRef,
    Welcome,
)
from tests.support.sessionkit import WAIT_S, LocalSession

POLICY = """
apiVersion: aip.io/v1alpha1
kind: AgentPolicy
metadata: {name: stateful}
spec:
  allowed_tools: [read_file]
  denied_tools: [delete_file]
  tool_rules:
    - tool: write_file
      action: ask
    - tool: run
      action: allow
      allow_args: {cmd: "ls( -l)?"}
"""
TIMEOUT_S = 60.0  # the approver's deadline, as the scripted ROUTER's welcome says
GRACE_S = 5.0


class FakeClock:
    """The approval client's monotonic clock; only the test moves it."""

    def __init__(self) -> None:
        self._now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class DropCounter(logging.Handler):
    """Counts the approval client's "dropping ..." / "ignoring ..." warnings: the only
    observable effect of a decision that must not count, so the test can wait for it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith(("dropping a late", "ignoring a malformed")):
            with self.cond:
                self.count += 1
                self.cond.notify_all()

    def wait_for(self, count: int) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: self.count >= count, WAIT_S)
        assert ok, f"the client never dropped the decision ({self.count} < {count})"


class Router:
    """A scripted approver: welcomes every hello, collects asks, sends what it is told."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.ctx = zmq.Context()
        self.sock: zmq.Socket[bytes] | None = None
        self.route = b""
        self.session = ""
        self.asks: dict[tuple[type, Any], Ask] = {}
        self.hellos = 0
        self.bind()

    def bind(self) -> None:
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind(self.endpoint)

    def unbind(self) -> None:
        assert self.sock is not None
        self.sock.close(0)
        self.sock = None

    def pump(self, until: Any = None, what: str = "") -> None:
        """Handle incoming messages; with ``until``, until it holds (deadline WAIT_S)."""
        assert self.sock is not None
        deadline = time.monotonic() + WAIT_S
        while True:
            if until is not None and until():
                return
            left = deadline - time.monotonic()
            if until is None:
                left = 0
            elif left <= 0:
                raise AssertionError(f"scripted approver: timed out waiting for {what}")
            if not self.sock.poll(int(left * 1000)):
                if until is None:
                    return
                continue
            route, body = self.sock.recv_multipart()
            msg = decode_to_approver(body)
            if isinstance(msg, Hello):
                self.route, self.session = route, msg.session
                self.hellos += 1
                self.send(
                    Welcome(
                        session=msg.session,
                        timeout_s=TIMEOUT_S,
                        max_ask_bytes=MAX_ASK_BYTES,
                        audit_path="/nonexistent/audit.jsonl",
                    )
                )
            elif isinstance(msg, Ask):
                self.asks[(type(msg.request_id), msg.request_id)] = msg
            elif isinstance(msg, Audit):
                rseqs = [r["rseq"] for r in msg.records if isinstance(r.get("rseq"), int)]
                self.send(AuditAck(session=msg.session, batch=msg.batch, rseqs=rseqs))
            # cancel / bye: nothing to do for a scripted approver

    def send(self, msg: ToProxy | bytes) -> None:
        assert self.sock is not None
        self.sock.send_multipart([self.route, msg if isinstance(msg, bytes) else encode(msg)])

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
        self.ctx.term()


class Relay(LocalSession):
    """One proxy session, in-process, with the real approval client and a scripted approver."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aip-h-", dir="/tmp"))
        run = self.dir / "run"
        run.mkdir(mode=0o700)
        self.router = Router(f"ipc://{run}/approver.sock")
        self.clock = FakeClock()
        self.drops = DropCounter()
        logging.getLogger("aip.proxy.approval").addHandler(self.drops)
        super().__init__(load_policy_text(POLICY), records=self.dir / "records.jsonl")
        hello = Hello(
            session=self.session_id,
            pid=os.getpid(),
            agent_id="agent",
            server="srv",
            policy=PolicyRef(name="stateful", sha256=self.recorder.policy_sha256),
        )
        self.client = ZmqApprovalClient(  # wired as runner.py does: one outbox per session
            self.router.endpoint,
            hello,
            grace_s=GRACE_S,
            clock=self.clock,
            audit=self.session.recorder.outbox,
        )
        self.asks = Asks(self.session, lambda: self.client)
        self.session.asks = self.asks

    def wake_client(self) -> None:
        """Let the client thread look at the (moved) clock: a public no-op-ish command."""
        self.client.set_agent_id("agent")

    def close(self) -> None:
        try:
            with contextlib.suppress(Exception):  # a state machine may end in any state
                self.asks.close()
            self.session.asks = None
            super().close()
        finally:
            logging.getLogger("aip.proxy.approval").removeHandler(self.drops)
            self.router.close()
            shutil.rmtree(self.dir, ignore_errors=True)
