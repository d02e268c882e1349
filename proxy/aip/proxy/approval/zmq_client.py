"""``ZmqApprovalClient``: the proxy's DEALER to the approver, owned by one background thread
(the link itself: ``ipc_dealer.make_dealer``; pyzmq loads only for a remote approver).

``ask``/``cancel``/``close`` may be called from any thread: they hand a command to the client
thread (``link.Mailbox``) and return at once; the thread alone touches the socket. The asks
themselves live in ``book.AskBook``: every ask ends exactly once in ``on_done`` (on the client
thread): a decision that matches request_id, nonce and digest in time, else a deny (DESIGN §6).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from aip.proxy.approval.answers import Answers
from aip.proxy.approval.api import AskRequest, AskResult, OnDone
from aip.proxy.approval.book import AskBook, Pending, ask_frame, call
from aip.proxy.approval.ipc_dealer import POLLIN, make_dealer
from aip.proxy.approval.link import Mailbox, as_dict
from aip.proxy.audit.outbox import AuditOutbox
from aip.shared import logs
from aip.shared.audit.spool import Spool
from aip.shared.outcomes import Outcome
from aip.shared.protocol.codec import ProtocolError, encode
from aip.shared.protocol.messages import (
    DEFAULT_TIMEOUT_S,
    FALLBACK_GRACE_S,
    MAX_ASK_BYTES,
    PROXY_PROTO,
    Bye,
    Cancel,
    Hello,
    PolicyRef,
    Welcome,
    audit_frame,
    heartbeat_ms,
    new_nonce,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

log = logs.get(__name__)

# Asks made while the first connection is being set up wait this long for it. A forwarded
# link (ssh -R, a container's mount, CURVE over TCP) can take more than the 0.5 s this once
# was, on a loaded host (an ssh-forwarded ask was denied in CI); a refused attempt (nobody
# listens) ends the wait at once, so a dead approver still denies without delay.
CONNECT_WAIT_S: Final = 5.0
JOIN_S: Final = 2.0


class ZmqApprovalClient(Answers):
    """Asks the approver at ``endpoint``; fail-closed in every path (what the approver
    answers: ``answers.Answers``)."""

    def __init__(
        self,
        endpoint: str,
        hello: Hello,
        *,
        grace_s: float = FALLBACK_GRACE_S,
        connect_wait_s: float = CONNECT_WAIT_S,
        heartbeat: tuple[int, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_audit_path: Callable[[str], None] | None = None,
        audit: AuditOutbox | None = None,
        on_late_allow: Callable[[str | int], None] | None = None,
        remote: Any = None,
    ) -> None:
        """``remote``: (pairing, key pair) of a CURVE approver (DESIGN §10), not ``endpoint``.
        ``on_audit_path(path)`` runs on the client thread for each ``welcome``: the audit
        log the approver writes, which the proxy then protects (DESIGN §4.5). ``audit``: the
        session's records to send (None: an outbox of its own); ``on_late_allow``: see
        ``set_late_allow_handler``."""
        self._on_audit_path = on_audit_path
        self._connect_wait_s = connect_wait_s
        self._clock = clock
        self._book = AskBook(
            grace_s=grace_s, clock=clock, timeout_s=self._timeout_s, withdraw=self._withdraw
        )
        self._mailbox = Mailbox()  # commands from any thread to the client thread
        # Thread state (touched only by the client thread):
        beat = heartbeat if heartbeat is not None else heartbeat_ms()  # (interval, timeout) ms
        self._dealer = make_dealer(endpoint, remote, beat)
        self._poller = self._dealer.poller
        self._connected = False
        self._connect_by: float | None = None  # end of the first-connection grace
        self._welcome: Welcome | None = None
        # The central audit log: our records go out as ``audit`` batches (DESIGN §6, §8).
        self._audit = audit if audit is not None else AuditOutbox(Spool(hello.session))
        self._on_late_allow = on_late_allow
        # Our proto, and the session key our spool is signed with: it binds the session id
        # to us at the approver (a reconnect proves it) and lets it verify the spool.
        key = self._audit.spool.key.hex()
        self._hello = Hello(**{**as_dict(hello), "proto": PROXY_PROTO, "key": key})
        self._refused = ""  # why the approver refused our hello (until we reconnect)
        self._thread = threading.Thread(target=self._run, name="aip-approval", daemon=True)
        self._thread.start()
        self._audit.attach(lambda: self._command("audit", None))

    # -- the ApprovalClient interface (any thread) ---------------------------------------

    def ask(self, request: AskRequest, on_done: OnDone) -> None:
        entry = Pending(request, on_done, new_nonce())
        if not self._book.add(entry):  # deny here: the client thread is gone
            on_done(AskResult(Outcome.SHUTDOWN))
            return
        self._command("ask", None)

    def cancel(self, request_id: str | int) -> bool:
        mine = self._book.take_request(request_id)
        for entry in mine:
            self._command("cancel", entry)
        return bool(mine)

    def close(self) -> None:
        if not self._book.close():
            return
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
        self._command("policy", PolicyRef(name=name, sha256=sha256))

    # -- the client thread ----------------------------------------------------------------

    def _command(self, name: str, arg: Any) -> None:
        self._mailbox.put(name, arg)

    def _run(self) -> None:
        try:
            self._poller.register(self._mailbox.fd, POLLIN)
            self._connect()
            while True:
                events = dict(self._poller.poll(self._poll_timeout_ms()))
                if self._mailbox.fd in events and not self._drain_commands():
                    break
                link, replies = self._dealer.woken(events)
                if link:
                    self._on_link_events()
                if replies:
                    self._on_replies()
                self._expire()
                self._audit.expire(self._clock())
                self._send_audit()
        except Exception:  # the thread's boundary: nothing may leave an ask unanswered
            log.exception("approval client failed; denying every pending ask")
        finally:
            self._book.close()  # from now on ask() answers by itself: nobody would here
            self._book.end_all(Outcome.SHUTDOWN)
            if self._dealer.started:
                # Records still waiting for company go now (unacked ones stay in the spool
                # for the approver to ingest; it drops what it already has).
                self._send_audit(now=math.inf)
                self._send(encode(Bye(session=self._hello.session)))
            self._dealer.close()
            self._mailbox.close()

    def _connect(self) -> Outcome | None:
        """None when connected (or connecting), else why we cannot."""
        if self._dealer.started:
            return None
        verdict = self._dealer.connect()
        if verdict is None:
            self._connect_by = self._clock() + self._connect_wait_s
        return verdict

    def _drain_commands(self) -> bool:
        """Run queued commands; False once ``close`` was asked for."""
        for name, arg in self._mailbox.take():
            if name == "close":
                return False
            if name == "cancel":
                self._send_cancel(arg)
            elif name == "agent_id":
                self._hello = Hello(**{**as_dict(self._hello), "agent_id": arg})
                if self._connected:
                    self._send(encode(self._hello))
            elif name == "policy":
                self._hello = Hello(**{**as_dict(self._hello), "policy": arg})
                if self._connected:
                    self._send(encode(self._hello))
        self._send_new_asks()
        self._send_audit()
        return True

    def _send_audit(self, now: float | None = None) -> None:
        """Hand queued audit records to the approver (only once it welcomed us)."""
        if not self._connected or self._welcome is None:
            return
        for batch, records in self._audit.take_batches(self._clock() if now is None else now):
            try:
                frame = audit_frame(self._hello.session, batch, records)
            except ProtocolError as exc:  # never sendable: do not retry it forever
                log.error("dropping an audit batch that does not fit the protocol: %s", exc)
                self._audit.drop(batch, records)
                continue
            if not self._send(frame):
                self._audit.resend_all()
                return

    def _send_new_asks(self) -> None:
        for entry in self._book.unsent():
            self._try_send(entry)

    def _try_send(self, entry: Pending) -> None:
        if not entry.frame:
            entry.frame = ask_frame(entry, self._hello.session, self._hello.agent_id)
        limit = self._welcome.max_ask_bytes if self._welcome is not None else MAX_ASK_BYTES
        if len(entry.frame) > limit:
            self._book.done(entry, Outcome.TOO_LARGE_TO_REVIEW)
            return
        verdict = self._connect()
        if verdict is not None:
            self._book.done(entry, verdict)
            return
        if not self._connected:
            self._on_link_events()  # a handshake we have not seen yet?
            if entry.sent_at is not None or not self._book.holds(entry):
                return  # sent (or ended) by the connect handler just now
        if self._refused:
            self._book.done(entry, Outcome.APPROVER_UNAVAILABLE)
            return
        if not self._connected:
            # Never ahead of our hello. While the first connection is being made the ask
            # waits (``_on_connected`` sends it); otherwise there is nobody to ask.
            if not self._in_connect_grace():
                self._book.done(entry, self._dealer.down)
            return
        if self._send(entry.frame):
            entry.sent_at = self._clock()
        else:
            self._book.done(entry, self._dealer.down)

    def _in_connect_grace(self) -> bool:
        return self._connect_by is not None and self._clock() < self._connect_by

    def _send(self, frame: bytes) -> bool:
        return self._dealer.send(frame)

    def _send_cancel(self, entry: Pending) -> None:
        if entry.sent_at is not None:
            self._withdraw(entry)
        call(entry, AskResult(Outcome.CANCELLED))

    def _on_link_events(self) -> None:
        for up in self._dealer.link_events():
            if up:
                self._on_connected()
            elif up is None:
                if not self._connected and self._in_connect_grace():
                    self._connect_by = None  # nobody listens: waiting would not help
                    self._book.end_all(self._dealer.down)
            else:
                log.warning("lost the approver connection; denying pending asks")
                self._connected, self._welcome, self._refused = False, None, ""
                self._audit.offline()  # records wait in the spool only, until the next welcome
                if (down := self._dealer.down) is not Outcome.APPROVER_UNAVAILABLE:
                    self._connect_by = None  # remote: the reason is known, nobody waits
                self._book.end_all(down, sent_only=down is Outcome.APPROVER_UNAVAILABLE)

    def _on_connected(self) -> None:
        verdict = self._dealer.recheck()
        if verdict is not None:
            self._book.end_all(verdict)
            return
        self._connected = True
        self._connect_by = None
        self._send(encode(self._hello))  # on every (re)connect
        self._send_new_asks()

    def _timeout_s(self) -> float:
        return self._welcome.timeout_s if self._welcome is not None else DEFAULT_TIMEOUT_S

    def _withdraw(self, entry: Pending) -> None:
        msg = Cancel(
            session=self._hello.session, request_id=entry.request.request_id, nonce=entry.nonce
        )
        self._send(encode(msg))

    def _poll_timeout_ms(self) -> int | None:
        times = [self._book.next_deadline(self._connect_by), self._audit.next_deadline()]
        now = self._clock()
        waits = [t - now for t in times if t is not None]
        link = self._dealer.next_wait()  # on the link's own (real) clock
        if link is not None:
            waits.append(link)
        if not waits:
            return None
        return max(0, int(min(waits) * 1000) + 1)

    def _expire(self) -> None:
        now = self._clock()
        for entry in self._book.unsent():
            if not self._in_connect_grace():
                self._try_send(entry)  # last chance, then denied unavailable
                if entry.sent_at is None:
                    self._book.done(entry, self._dealer.down)
        for entry in self._book.overdue(now):
            log.warning("approver did not answer ask %r in time", entry.request.request_id)
            self._book.done(entry, Outcome.TIMEOUT)
