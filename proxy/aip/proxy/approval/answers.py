"""What the approver sends a proxy session, handled on the approval client's thread: decisions
(matched to their ask by request id, nonce and digest), ``welcome`` (the audit log to protect,
then our records again), ``audit_ack`` and the refusals of ``error``. A part of
``zmq_client.ZmqApprovalClient``, kept apart so each module reads in one go.
"""

from __future__ import annotations

from collections.abc import Callable

from aip.proxy.approval.api import AskResult
from aip.proxy.approval.book import call
from aip.proxy.approval.link import as_dict
from aip.shared import logs
from aip.shared.outcomes import Outcome, row
from aip.shared.protocol.codec import encode
from aip.shared.protocol.messages import (
    SPOOL_MAC2_PROTO,
    AuditAck,
    Decision,
    Error,
    ErrorCode,
    MsgType,
    Welcome,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from aip.proxy.approval.book import AskBook
    from aip.proxy.approval.ipc_dealer import IpcDealer
    from aip.proxy.approval.remote_dealer import CurveDealer
    from aip.proxy.audit.outbox import AuditOutbox
    from aip.shared.protocol.messages import Hello

log = logs.get("aip.proxy.approval.zmq_client")  # one logger for the client's lines


class Answers:
    """The reply handlers of ``ZmqApprovalClient`` (its state, its ``_send``)."""

    if TYPE_CHECKING:
        _book: AskBook
        _audit: AuditOutbox
        _dealer: IpcDealer | CurveDealer
        _hello: Hello
        _welcome: Welcome | None
        _refused: str
        _on_audit_path: Callable[[str], None] | None
        _on_late_allow: Callable[[str | int], None] | None

        def _send(self, frame: bytes) -> bool: ...
        def _send_audit(self, now: float | None = None) -> None: ...

    def _on_replies(self) -> None:
        for msg in self._dealer.messages():
            if isinstance(msg, Decision):
                self._on_decision(msg)
            elif isinstance(msg, Welcome):
                self._on_welcome(msg)
            elif isinstance(msg, Error):
                self._on_error(msg)
            elif isinstance(msg, AuditAck) and msg.session == self._hello.session:
                self._audit.on_ack(msg.batch, msg.rseqs)  # those records are written
            # Anything else (a status_reply is for aipctl) is not ours: ignored.

    def _on_welcome(self, msg: Welcome) -> None:
        if msg.session == self._hello.session:
            self._welcome = msg
            # Before the records this welcome makes us send again (they are re-read, either
            # MAC accepted); an approver that would refuse BLAKE2b lines gets the HMAC still.
            self._audit.spool.sign_with_mac2(msg.proto >= SPOOL_MAC2_PROTO)
            if self._on_audit_path is not None:
                try:
                    self._on_audit_path(msg.audit_path)
                except Exception:  # thread boundary: the client must go on
                    log.exception("cannot protect the approver's audit log")
            self._audit.resend_all()  # batches in flight before may be lost: send again
            self._send_audit()

    def _on_decision(self, msg: Decision) -> None:
        entry = self._book.take_decision(msg, self._hello.session)
        if entry is None:
            log.warning("dropping a late, unknown or mismatched decision for %r", msg.request_id)
            late = self._book.take_ended(msg.nonce)
            if late is not None and row(msg.outcome).forwards and self._on_late_allow:
                self._on_late_allow(late)  # the approver logged an allow we never acted on
            return
        info: dict[str, Any] = {"queue_wait_ms": msg.queue_wait_ms, "answered_by_approver": True}
        if msg.human_decision is not None:
            info["human_decision"] = as_dict(msg.human_decision)
        call(entry, AskResult(msg.outcome, info))

    def _on_error(self, msg: Error) -> None:
        log.debug("approver error %s about %s %s: %s", msg.code, msg.about, msg.ref, msg.detail)
        if msg.code is ErrorCode.HELLO_REQUIRED:
            self._on_hello_required(msg)
        elif msg.code in (ErrorCode.VERSION, ErrorCode.SESSION_BOUND) or (
            msg.code is ErrorCode.MALFORMED
            and (msg.about is MsgType.HELLO or (msg.about is None and self._welcome is None))
        ):
            # Our hello was refused (an approver from before ``proto`` names nothing, but
            # it never welcomed us): it will not answer our asks, so none waits for the
            # fallback deadline.
            log.error("the approver refused this proxy: %s %s", msg.code, msg.detail)
            self._refused = msg.detail or str(msg.code)
            self._book.end_all(Outcome.APPROVER_UNAVAILABLE)
        elif msg.code is ErrorCode.MALFORMED and msg.about is MsgType.ASK:
            entry = self._book.get(msg.ref)
            if entry is not None and entry.sent_at is not None:
                log.error(
                    "the approver could not read ask %r: %s", entry.request.request_id, msg.detail
                )
                self._book.done(entry, Outcome.APPROVER_UNAVAILABLE)
        elif msg.code is ErrorCode.MALFORMED:
            log.error("the approver could not read our %s: %s", msg.about, msg.detail)

    def _on_hello_required(self, msg: Error) -> None:
        if msg.about is MsgType.AUDIT:
            self._send(encode(self._hello))  # then the unacknowledged records again
            self._audit.resend_all()
            return
        if msg.about is not MsgType.ASK:
            return
        entry = self._book.get(msg.ref)
        if entry is None or entry.sent_at is None:
            return
        if entry.hello_resent:
            self._book.done(entry, Outcome.APPROVER_UNAVAILABLE)
            return
        entry.hello_resent = True  # hello, then the message once more
        if not (self._send(encode(self._hello)) and self._send(entry.frame)):
            self._book.done(entry, Outcome.APPROVER_UNAVAILABLE)
