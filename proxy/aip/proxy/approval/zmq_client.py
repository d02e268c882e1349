"""``ZmqApprovalClient``: the proxy's DEALER to the approver, owned by one background thread.

``ask``/``cancel``/``close`` may be called from any thread: they hand a command to the client
thread (``ask_link.Mailbox``) and return at once; the thread alone touches the socket. Every
ask ends exactly once in ``on_done`` (on the client thread): a decision that matches
request_id, nonce and digest in time, else a deny (DESIGN §6).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import zmq
from zmq.utils.monitor import parse_monitor_message

from aip.proxy.approval.api import AskRequest, AskResult, OnDone
from aip.proxy.approval.link import Mailbox, as_dict, endpoint_verdict, from_our_uid, same_id
from aip.proxy.audit.outbox import outbox_for
from aip.proxy.audit.recorder import record_late_allow
from aip.shared import protocol as p
from aip.shared.outcomes import Outcome

log = logging.getLogger(__name__)

CONNECT_WAIT_S: Final = 0.5  # asks made while the first connection is being set up wait this long
HEARTBEAT_IVL_MS: Final = 1000
HEARTBEAT_TIMEOUT_MS: Final = 3000
JOIN_S: Final = 2.0
ENDED_MEMORY: Final = 1024  # asks we ended ourselves, remembered to spot a late allow
_MONITOR_EVENTS: Final = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


@dataclass(eq=False, slots=True)
class _Pending:
    request: AskRequest
    on_done: OnDone
    nonce: str
    frame: bytes = b""
    sent_at: float | None = None  # monotonic; None while waiting for the first connection
    hello_resent: bool = False


class ZmqApprovalClient:
    """Asks the approver at ``endpoint``; fail-closed in every path."""

    def __init__(
        self,
        endpoint: str,
        hello: p.Hello,
        *,
        grace_s: float = p.FALLBACK_GRACE_S,
        connect_wait_s: float = CONNECT_WAIT_S,
        heartbeat_ivl_ms: int = HEARTBEAT_IVL_MS,
        heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS,
        clock: Callable[[], float] = time.monotonic,
        on_audit_path: Callable[[str], None] | None = None,
    ) -> None:
        """``on_audit_path(path)`` runs on the client thread for each ``welcome``: the audit
        log the approver writes, which the proxy then protects (DESIGN §4.5)."""
        self._endpoint = endpoint
        self._on_audit_path = on_audit_path
        self._hello = hello
        self._grace_s = grace_s
        self._connect_wait_s = connect_wait_s
        self._heartbeat = (heartbeat_ivl_ms, heartbeat_timeout_ms)
        self._clock = clock
        self._lock = threading.Lock()  # guards _pending and _closed
        self._pending: dict[str, _Pending] = {}  # nonce -> ask
        self._closed = False
        self._mailbox = Mailbox()  # commands from any thread to the client thread
        # Thread state (touched only by the client thread):
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._poller = zmq.Poller()
        self._sock: zmq.Socket[bytes] | None = None
        self._monitor: zmq.Socket[bytes] | None = None
        self._connected = False
        self._connect_by: float | None = None  # end of the first-connection grace
        self._welcome: p.Welcome | None = None
        # The central audit log: our records go out as ``audit`` batches (DESIGN §6, §8).
        self._audit = outbox_for(hello.session)
        self._ended: dict[str, str | int] = {}  # nonce -> request_id of asks we denied
        self._on_late_allow: Callable[[str | int], None] | None = functools.partial(
            record_late_allow, hello.session
        )
        self._thread = threading.Thread(target=self._run, name="aip-approval", daemon=True)
        self._thread.start()
        self._audit.attach(lambda: self._command("audit", None))

    # -- the ApprovalClient interface (any thread) ---------------------------------------

    def ask(self, request: AskRequest, on_done: OnDone) -> None:
        entry = _Pending(request, on_done, p.new_nonce())
        with self._lock:
            closed = self._closed
            if not closed:
                self._pending[entry.nonce] = entry
        if closed:  # deny here: the client thread is gone
            on_done(AskResult(Outcome.SHUTDOWN))
            return
        self._command("ask", None)

    def cancel(self, request_id: str | int) -> bool:
        with self._lock:
            mine = [e for e in self._pending.values() if same_id(e.request.request_id, request_id)]
            for entry in mine:
                del self._pending[entry.nonce]
        for entry in mine:
            self._command("cancel", entry)
        return bool(mine)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._command("close", None)
        if threading.current_thread() is not self._thread:
            self._thread.join(JOIN_S)

    def set_late_allow_handler(self, handler: Callable[[str | int], None]) -> None:
        """``handler(request_id)`` runs when an allow arrives for an ask we already ended
        (the approver recorded it; the caller records that it was not forwarded)."""
        self._on_late_allow = handler

    def set_agent_id(self, agent_id: str) -> None:
        """The agent id became known (``initialize``): introduce ourselves again."""
        self._command("agent_id", agent_id)

    def set_policy(self, name: str, sha256: str) -> None:
        """The policy was reloaded (aip.proxy.reload): introduce ourselves again with it, so
        the approver's records of later asks name the policy that decided them."""
        self._command("policy", p.PolicyRef(name=name, sha256=sha256))

    # -- the client thread ----------------------------------------------------------------

    def _command(self, name: str, arg: Any) -> None:
        self._mailbox.put(name, arg)

    def _run(self) -> None:
        self._ctx = zmq.Context()
        try:
            self._poller.register(self._mailbox.fd, zmq.POLLIN)
            self._connect()
            while True:
                events = dict(self._poller.poll(self._poll_timeout_ms()))
                if self._mailbox.fd in events and not self._drain_commands():
                    break
                if self._monitor is not None and self._monitor in events:
                    self._on_monitor(self._monitor)
                if self._sock is not None and self._sock in events:
                    self._on_replies()
                self._expire()
                self._audit.expire(self._clock())
                self._send_audit()
        except Exception:  # the thread's boundary: nothing may leave an ask unanswered
            log.exception("approval client failed; denying every pending ask")
        finally:
            with self._lock:  # from now on ask() answers by itself: nobody would here
                self._closed = True
            self._deny_all(Outcome.SHUTDOWN)
            if self._sock is not None:
                # Records still waiting for company go now (unacked ones stay in the spool
                # for the approver to ingest; it drops what it already has).
                self._send_audit(now=math.inf)
                with contextlib.suppress(zmq.ZMQError):
                    self._sock.send(p.encode(p.Bye(session=self._hello.session)), zmq.NOBLOCK)
                self._sock.close(linger=100)
            if self._monitor is not None:
                self._monitor.close(linger=0)
            self._ctx.term()
            self._mailbox.close()

    def _connect(self) -> Outcome | None:
        """Connect once the socket directory is ours and 0700 (checked before connecting);
        None when connected (or connecting), else why we cannot."""
        if self._sock is not None:
            return None
        verdict = endpoint_verdict(self._endpoint)
        if verdict is not None:
            return verdict
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.immediate = True  # queue only on a live connection: no stale ask later
        sock.heartbeat_ivl, sock.heartbeat_timeout = self._heartbeat
        self._monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
        sock.connect(self._endpoint)
        self._sock = sock
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._connect_by = self._clock() + self._connect_wait_s
        return None

    def _drain_commands(self) -> bool:
        """Run queued commands; False once ``close`` was asked for."""
        for name, arg in self._mailbox.take():
            if name == "close":
                return False
            if name == "cancel":
                self._send_cancel(arg)
            elif name == "agent_id":
                self._hello = p.Hello(**{**as_dict(self._hello), "agent_id": arg})
                if self._connected:
                    self._send(p.encode(self._hello))
            elif name == "policy":
                self._hello = p.Hello(**{**as_dict(self._hello), "policy": arg})
                if self._connected:
                    self._send(p.encode(self._hello))
        self._send_new_asks()
        self._send_audit()
        return True

    def _send_audit(self, now: float | None = None) -> None:
        """Hand queued audit records to the approver (only once it welcomed us)."""
        if not self._connected or self._welcome is None:
            return
        for batch, records in self._audit.take_batches(self._clock() if now is None else now):
            try:
                msg = p.Audit(session=self._hello.session, batch=batch, records=records)
            except p.ProtocolError as exc:  # never sendable: do not retry it forever
                log.error("dropping an audit batch that does not fit the protocol: %s", exc)
                self._audit.on_ack(batch, [r["rseq"] for r in records if "rseq" in r])
                continue
            if not self._send(p.encode(msg)):
                self._audit.resend_all()
                return

    def _send_new_asks(self) -> None:
        with self._lock:
            waiting = [e for e in self._pending.values() if e.sent_at is None]
        for entry in waiting:
            self._try_send(entry)

    def _try_send(self, entry: _Pending) -> None:
        if not entry.frame:
            req = entry.request
            entry.frame = p.encode(
                p.Ask(
                    session=self._hello.session,
                    request_id=req.request_id,
                    nonce=entry.nonce,
                    digest=req.digest,
                    tool=req.tool,
                    arguments=req.arguments,
                    rule=req.rule,
                    size=req.size,
                    agent_id=self._hello.agent_id,
                    dlp=list(req.dlp),
                )
            )
        limit = self._welcome.max_ask_bytes if self._welcome is not None else p.MAX_ASK_BYTES
        if len(entry.frame) > limit:
            self._done(entry, Outcome.TOO_LARGE_TO_REVIEW)
            return
        verdict = self._connect()
        if verdict is not None:
            self._done(entry, verdict)
            return
        if not self._connected and self._monitor is not None:
            self._on_monitor(self._monitor)  # a handshake we have not seen yet?
            if entry.sent_at is not None or self._pending.get(entry.nonce) is not entry:
                return  # sent (or ended) by the connect handler just now
        if not self._connected:
            # Never ahead of our hello. While the first connection is being made the ask
            # waits (``_on_connected`` sends it); otherwise there is nobody to ask.
            if not self._in_connect_grace():
                self._done(entry, Outcome.APPROVER_UNAVAILABLE)
            return
        if self._send(entry.frame):
            entry.sent_at = self._clock()
        else:
            self._done(entry, Outcome.APPROVER_UNAVAILABLE)

    def _in_connect_grace(self) -> bool:
        return self._connect_by is not None and self._clock() < self._connect_by

    def _send(self, frame: bytes) -> bool:
        if self._sock is None:
            return False
        try:
            self._sock.send(frame, zmq.NOBLOCK)  # NOBLOCK + immediate: no peer -> Again
        except zmq.ZMQError:
            return False
        return True

    def _send_cancel(self, entry: _Pending) -> None:
        if entry.sent_at is not None:
            msg = p.Cancel(
                session=self._hello.session, request_id=entry.request.request_id, nonce=entry.nonce
            )
            self._send(p.encode(msg))
        self._call(entry, AskResult(Outcome.CANCELLED))

    def _on_monitor(self, monitor: zmq.Socket[bytes]) -> None:
        while True:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._on_connected()
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                log.warning("lost the approver connection; denying pending asks")
                self._connected = False
                self._welcome = None
                self._audit.resend_all()
                self._deny_sent(Outcome.APPROVER_UNAVAILABLE)

    def _on_connected(self) -> None:
        verdict = endpoint_verdict(self._endpoint)
        if verdict is not None:  # the endpoint changed hands since we checked
            log.warning("approver endpoint no longer trusted; disconnecting")
            assert self._sock is not None
            with contextlib.suppress(zmq.ZMQError):
                self._sock.disconnect(self._endpoint)
            self._deny_all(verdict)
            return
        self._connected = True
        self._connect_by = None
        self._send(p.encode(self._hello))  # on every (re)connect
        self._send_new_asks()

    def _on_replies(self) -> None:
        assert self._sock is not None
        while True:
            try:
                frame = self._sock.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if not from_our_uid(frame):
                log.warning("ignoring a message from an approver of another user")
                continue
            try:
                msg = p.decode_to_proxy(frame.bytes)
            except p.ProtocolError as exc:
                log.warning("ignoring a malformed approver message: %s", exc)
                continue
            if isinstance(msg, p.Decision):
                self._on_decision(msg)
            elif isinstance(msg, p.Welcome):
                self._on_welcome(msg)
            elif isinstance(msg, p.Error):
                self._on_error(msg)
            elif isinstance(msg, p.AuditAck) and msg.session == self._hello.session:
                self._audit.on_ack(msg.batch, msg.rseqs)  # those records are written
            # Anything else (a status_reply is for aipctl) is not ours: ignored.

    def _on_welcome(self, msg: p.Welcome) -> None:
        if msg.session == self._hello.session:
            self._welcome = msg
            if self._on_audit_path is not None:
                try:
                    self._on_audit_path(msg.audit_path)
                except Exception:  # thread boundary: the client must go on
                    log.exception("cannot protect the approver's audit log")
            self._audit.resend_all()  # batches in flight before may be lost: send again
            self._send_audit()

    def _on_decision(self, msg: p.Decision) -> None:
        with self._lock:
            entry = self._pending.get(msg.nonce)
            if (
                entry is None
                or entry.sent_at is None
                or msg.session != self._hello.session
                or not same_id(entry.request.request_id, msg.request_id)
                or msg.digest != entry.request.digest
                or self._clock() >= self._fallback_at(entry)
            ):
                entry = None
            else:
                del self._pending[msg.nonce]  # used once
        if entry is None:
            log.warning("dropping a late, unknown or mismatched decision for %r", msg.request_id)
            late = self._ended.pop(msg.nonce, None)
            if late is not None and msg.outcome is Outcome.HUMAN_APPROVED and self._on_late_allow:
                self._on_late_allow(late)  # the approver logged an allow we never acted on
            return
        info: dict[str, Any] = {"queue_wait_ms": msg.queue_wait_ms, "answered_by_approver": True}
        if msg.human_decision is not None:
            info["human_decision"] = as_dict(msg.human_decision)
        self._call(entry, AskResult(msg.outcome, info))

    def _on_error(self, msg: p.Error) -> None:
        log.debug("approver error %s about %s %s: %s", msg.code, msg.about, msg.ref, msg.detail)
        if msg.code is p.ErrorCode.HELLO_REQUIRED and msg.about is p.MsgType.AUDIT:
            self._send(p.encode(self._hello))  # then the unacknowledged records again
            self._audit.resend_all()
            return
        if msg.code is not p.ErrorCode.HELLO_REQUIRED or msg.about is not p.MsgType.ASK:
            return
        with self._lock:
            entry = self._pending.get(msg.ref)
        if entry is None or entry.sent_at is None:
            return
        if entry.hello_resent:
            self._done(entry, Outcome.APPROVER_UNAVAILABLE)
            return
        entry.hello_resent = True  # hello, then the message once more
        if not (self._send(p.encode(self._hello)) and self._send(entry.frame)):
            self._done(entry, Outcome.APPROVER_UNAVAILABLE)

    def _fallback_at(self, entry: _Pending) -> float:
        timeout_s = self._welcome.timeout_s if self._welcome is not None else p.DEFAULT_TIMEOUT_S
        assert entry.sent_at is not None
        return entry.sent_at + timeout_s + self._grace_s

    def _poll_timeout_ms(self) -> int | None:
        with self._lock:
            entries = list(self._pending.values())
        times = [self._fallback_at(e) for e in entries if e.sent_at is not None]
        if self._connect_by is not None and any(e.sent_at is None for e in entries):
            times.append(self._connect_by)
        audit_deadline = self._audit.next_deadline()
        if audit_deadline is not None:
            times.append(audit_deadline)
        if not times:
            return None
        return max(0, int((min(times) - self._clock()) * 1000) + 1)

    def _expire(self) -> None:
        now = self._clock()
        with self._lock:
            entries = list(self._pending.values())
        for entry in entries:
            if entry.sent_at is None:
                if not self._in_connect_grace():
                    self._try_send(entry)  # last chance, then denied unavailable
                    if entry.sent_at is None:
                        self._done(entry, Outcome.APPROVER_UNAVAILABLE)
            elif now >= self._fallback_at(entry):
                log.warning("approver did not answer ask %r in time", entry.request.request_id)
                self._done(entry, Outcome.TIMEOUT)

    def _deny_sent(self, outcome: Outcome) -> None:
        with self._lock:
            sent = [e for e in self._pending.values() if e.sent_at is not None]
        for entry in sent:
            self._done(entry, outcome)

    def _deny_all(self, outcome: Outcome) -> None:
        with self._lock:
            entries = list(self._pending.values())
        for entry in entries:
            self._done(entry, outcome)

    def _done(self, entry: _Pending, outcome: Outcome) -> None:
        """End a still-pending ask with ``outcome`` (no-op if it already ended)."""
        with self._lock:
            if self._pending.get(entry.nonce) is not entry:
                return
            del self._pending[entry.nonce]
        if entry.sent_at is not None:
            self._ended[entry.nonce] = entry.request.request_id
            while len(self._ended) > ENDED_MEMORY:
                del self._ended[next(iter(self._ended))]
        if entry.sent_at is not None and outcome is not Outcome.SHUTDOWN:
            # The approver may still hold it (e.g. our fallback fired first): withdraw it.
            self._send(
                p.encode(
                    p.Cancel(
                        session=self._hello.session,
                        request_id=entry.request.request_id,
                        nonce=entry.nonce,
                    )
                )
            )
        lost = entry.sent_at is not None and outcome is Outcome.APPROVER_UNAVAILABLE
        # Sent, then the connection died: the approver may have logged an allow it could not
        # deliver; the recorder adds a not_forwarded record next to our deny (DESIGN §8).
        self._call(entry, AskResult(outcome, {"sent_to_approver": True} if lost else {}))

    @staticmethod
    def _call(entry: _Pending, result: AskResult) -> None:
        try:
            entry.on_done(result)
        except Exception:  # the relay's callback failed; the ask is over either way
            log.exception("on_done failed for ask %r", entry.request.request_id)
