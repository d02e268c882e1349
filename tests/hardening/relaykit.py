"""An in-process proxy session for the stateful test: the real ``Session``, upstream and
downstream code and the real ``ZmqApprovalClient``, talking to a scripted ROUTER, with the
client's monotonic clock injected (so deadlines and clock jumps are the test's to decide).

The server side is an OS pipe the test reads; "server responses" go through the real
``downstream.relay_server_line``. Every wait has a deadline; nothing sleeps to synchronise.
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

import orjson
import zmq

from aip.proxy.approval.zmq_client import ZmqApprovalClient
from aip.proxy.audit.recorder import Recorder
from aip.proxy.relay import downstream, upstream
from aip.proxy.relay.asks import Asks
from aip.proxy.relay.session import Session
from aip.proxy.stdio import Wire
from aip.shared.policy.decision import Context
from aip.shared.policy.load import load_policy_text
from aip.shared.policy.ratelimit import RateLimiter
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
from tests.support.fdwait import readable

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
WAIT_S = 5.0  # deadline for anything the test waits on


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


def read_lines(fd: int, buf: bytearray) -> list[bytes]:
    """Complete lines available now on ``fd`` (non-blocking); partial ones stay in ``buf``."""
    while readable(fd, 0):
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        buf += chunk
    out = []
    while (nl := buf.find(b"\n")) >= 0:
        out.append(bytes(buf[: nl + 1]))
        del buf[: nl + 1]
    return out


def wait_lines(fd: int, buf: bytearray, n: int = 1) -> list[bytes]:
    deadline = time.monotonic() + WAIT_S
    got: list[bytes] = []
    while len(got) < n:
        got += read_lines(fd, buf)
        if len(got) >= n:
            break
        left = deadline - time.monotonic()
        assert left > 0, f"expected {n} line(s), got {got!r}"
        readable(fd, left)
    return got


class Relay:
    """One proxy session, in-process. ``host``/``server`` lines are collected by the test."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aip-h-", dir="/tmp"))
        run = self.dir / "run"
        run.mkdir(mode=0o700)
        self.router = Router(f"ipc://{run}/approver.sock")
        self.clock = FakeClock()
        self.drops = DropCounter()
        logging.getLogger("aip.proxy.approval").addHandler(self.drops)
        self.host_r, self.host_w = os.pipe()
        self.server_r, self.server_w = os.pipe()
        self.records_path = self.dir / "records.jsonl"
        self.records_fd = os.open(self.records_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        session_id = os.urandom(8).hex()
        self.session = Session(
            policy=load_policy_text(POLICY),
            limiter=RateLimiter(),
            context=Context(cwd="/"),
            recorder=Recorder(
                session=session_id,
                server="srv",
                policy_name="stateful",
                policy_sha256="0" * 64,
                mode="enforce",
                agent_id="agent",
                fd=self.records_fd,
            ),
            host=Wire(self.host_w, "host"),
            server=Wire(self.server_w, "server"),
            agent_id_fixed=True,
        )
        hello = Hello(
            session=session_id,
            pid=os.getpid(),
            agent_id="agent",
            server="srv",
            policy=PolicyRef(name="stateful", sha256="0" * 64),
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
        self.host_buf = bytearray()
        self.server_buf = bytearray()

    def send(self, obj: dict[str, Any]) -> bytes:
        """Hand one client line to the real upstream handler; returns the canonical bytes."""
        line = orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
        upstream.handle_line(self.session, line)
        return orjson.dumps(orjson.loads(line)) + b"\n"

    def server_says(self, obj: dict[str, Any]) -> None:
        downstream.relay_server_line(self.session, orjson.dumps(obj) + b"\n")

    def wake_client(self) -> None:
        """Let the client thread look at the (moved) clock: a public no-op-ish command."""
        self.client.set_agent_id("agent")

    def records(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.records_path.read_bytes().splitlines()]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.asks.close()
        logging.getLogger("aip.proxy.approval").removeHandler(self.drops)
        self.router.close()
        for fd in (self.host_r, self.host_w, self.server_r, self.server_w, self.records_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.dir, ignore_errors=True)
