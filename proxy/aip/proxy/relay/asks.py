"""The relay's side of ``ask`` decisions: hand the request to the approval client, keep
relaying, and act on the outcome exactly once (forward the approved bytes, answer a deny,
or stay silent for a cancel). While a human decides, progress notifications keep a client
with a ``progressToken`` from timing out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from aip.proxy.relay.dlp_filter import UNSCANNABLE
from aip.proxy.relay.session import Session
from aip.proxy.relay.tool_digests import grant_facts
from aip.shared import logs
from aip.shared.hashes import sha256
from aip.shared.jsonrpc import Message, RequestId, notification_line
from aip.shared.outcomes import UNAVAILABLE_OUTCOMES, Outcome
from aip.shared.policy.decision import Decision
from aip.shared.slotclass import Slotted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    from aip.proxy.approval.api import ApprovalClient, AskResult

log = logs.get(__name__)

PROGRESS_INTERVAL_S: Final = 5.0


class _Ask(Slotted):
    """One call waiting for the approver's answer."""

    __slots__ = ("decision", "dlp", "done", "msg", "started", "tool")
    msg: Message
    decision: Decision
    tool: str | None
    started: float
    dlp: list[str] | None  # rules the request scan found (audit ``dlp``)
    done: threading.Event

    def __init__(
        self,
        msg: Message,
        decision: Decision,
        tool: str | None,
        started: float,
        dlp: list[str] | None = None,
        done: threading.Event | None = None,  # None: a new Event
    ) -> None:
        self.msg = msg
        self.decision = decision
        self.tool = tool
        self.started = started
        self.dlp = dlp
        self.done = threading.Event() if done is None else done


class Asks:
    """Pending asks of one session, keyed by JSON-RPC id."""

    def __init__(
        self,
        session: Session,
        connect: Callable[[], ApprovalClient],
        progress_interval_s: float = PROGRESS_INTERVAL_S,
    ) -> None:
        """``connect`` makes the approval client, on ``connect()`` or at the first ask, so the
        approver's hello can carry the agent id learnt from ``initialize``."""
        self._session = session
        self._connect = connect
        self._client_obj: ApprovalClient | None = None
        self._progress_interval_s = progress_interval_s
        self._lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._pending: dict[RequestId, _Ask] = {}
        self._closed = False  # after close(), asks are denied (shutdown), never sent

    def connect(self) -> ApprovalClient:
        with self._connect_lock:  # not self._lock: the relay must not wait on a handshake
            if self._client_obj is None:
                self._client_obj = self._connect()
            return self._client_obj

    def connect_soon(self) -> None:
        """Connect in the background (importing pyzmq and the handshake stay off the relay)."""
        threading.Thread(target=self._connect_logged, name="approval-connect", daemon=True).start()

    def _connect_logged(self) -> None:
        try:
            self.connect()
        except Exception:  # thread boundary: the first ask will try again and fail closed
            log.exception("cannot set up the approval client")

    def policy_changed(self, name: str, sha256: str) -> None:
        """A reload swapped the policy: a connected client says hello again with it (one made
        later reads the new policy itself). Under the connect lock, so none is missed."""
        with self._connect_lock:
            setter = getattr(self._client_obj, "set_policy", None)  # UnavailableApprover: none
            if setter is not None:
                setter(name, sha256)

    @property
    def _client(self) -> ApprovalClient:
        return self._client_obj if self._client_obj is not None else self.connect()

    def is_pending(self, request_id: RequestId) -> bool:
        # No lock (asked for every client request): one dict lookup is atomic, and the
        # lock never made the check and a later start() one step either.
        return request_id in self._pending

    def start(
        self, msg: Message, decision: Decision, tool: str | None, dlp: list[str] | None = None
    ) -> None:
        assert msg.id is not None
        params = msg.obj["params"]
        arguments = params.get("arguments", {})
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        # DLP: what the approver may see, and the rules that fired (the request scan's own
        # list wins, as in the proxy's record of the ask: aip.proxy.audit.recorder)
        rec = self._session.recorder
        shown, hits = rec.scan(arguments) if rec.scan else (rec.redact(arguments), [])
        from aip.proxy.approval.api import AskRequest  # loaded with the client, not at start
        from aip.shared.dlp.hidden import hidden_chars  # likewise

        request = AskRequest(
            # The approver logs and records the id and tool: what it gets is redacted too
            # (a cancel names the ask by the same redacted id: ``_shown_id``).
            request_id=self._shown_id(msg.id),
            tool=rec.redact(tool or ""),
            arguments=shown,
            rule=decision.rule.label if decision.rule is not None else "",
            # The digest binds the human's answer to exactly these bytes (no newline).
            digest=sha256(msg.wire).hexdigest(),
            size=len(msg.wire),
            progress_token=token if isinstance(token, str | int) else None,
            dlp=list(dlp or hits),
            hidden_chars=hidden_chars(arguments, shown),
            grant=grant_facts(self._session, tool, arguments),
        )
        entry = _Ask(msg, decision, tool, time.monotonic(), dlp)
        with self._lock:  # registered before ask(): on_done may run inside it
            self._pending[msg.id] = entry
        if shown == UNSCANNABLE:  # no secret check possible: never ask blind
            self._on_done(msg.id, _result(Outcome.TOO_LARGE_TO_REVIEW))
            return
        if request.progress_token is not None:
            threading.Thread(
                target=self._progress,
                args=(entry, request.progress_token),
                name=f"ask-progress-{msg.id}",
                daemon=True,
            ).start()
        log.info("asking a human about %s (id=%r, %s)", tool, msg.id, request.rule)
        request_id = msg.id
        if self._closed:  # shutting down: a client made now would reach the approver
            self._on_done(request_id, _result(Outcome.SHUTDOWN))
            return
        try:
            self._client.ask(request, lambda result: self._on_done(request_id, result))
        except Exception:  # fail closed: a broken client is an unavailable approver
            log.exception("approval client failed")
            self._on_done(request_id, _result(Outcome.APPROVER_UNAVAILABLE))

    def _shown_id(self, request_id: RequestId) -> RequestId:
        shown = self._session.recorder.redact(request_id)
        return shown if isinstance(shown, str | int) else request_id

    def cancel(self, request_id: RequestId) -> None:
        log.info("client cancelled pending ask id=%r", request_id)
        if not self._client.cancel(self._shown_id(request_id)):
            self._on_done(request_id, _result(Outcome.CANCELLED))

    def close(self) -> None:
        """Deny what is still waiting (the client answers SHUTDOWN) and release the client."""
        self._closed = True
        try:
            if self._client_obj is not None:
                self._client_obj.close()
        finally:
            with self._lock:
                left = list(self._pending)
            for request_id in left:
                self._on_done(request_id, _result(Outcome.SHUTDOWN))

    def _on_done(self, request_id: RequestId, result: AskResult) -> None:
        """Runs exactly once per ask (later calls find nothing), on any thread."""
        with self._lock:
            entry = self._pending.pop(request_id, None)
        if entry is None:
            return
        entry.done.set()
        s, d, msg = self._session, entry.decision, entry.msg
        outcome = result.outcome
        fields: dict[str, Any] = {
            "tool": entry.tool,
            "arguments": msg.obj["params"].get("arguments", {}),
            "request_id": request_id,
            "rule": d.rule.label if d.rule is not None else None,
            "extra": dict(result.info) or None,
        }
        if entry.dlp:
            fields["extra"] = {**(fields["extra"] or {}), "dlp": entry.dlp}
        if outcome in (Outcome.HUMAN_APPROVED, Outcome.GRANTED):
            if s.closed:
                s.record(Outcome.SERVER_EXITED, **fields)
                s.reply_error(request_id, Outcome.SERVER_EXITED, tool=entry.tool)
                return
            s.record(outcome, **fields)
            s.forward(msg, "tools/call", entry.tool)  # a failed send answers server_exited
            return
        if outcome not in _DENY_OR_CANCEL:
            log.error("approval client returned %s for an ask; denying", outcome.value)
            outcome = Outcome.INTERNAL_ERROR
        if d.token_reserved and d.rule is not None:
            s.give_back(d.rule)
        s.record(outcome, **fields)
        if outcome is not Outcome.CANCELLED:
            s.reply_error(request_id, outcome, tool=entry.tool)

    def _progress(self, entry: _Ask, token: str | int) -> None:
        last = 0.0
        while not entry.done.wait(self._progress_interval_s):
            # MCP: progress must increase with each notification.
            waited = max(round(time.monotonic() - entry.started, 3), last + 0.001)
            last = waited
            params = {
                "progressToken": token,
                "progress": waited,
                "message": "waiting for human approval",
            }
            if not self._session.host.write(notification_line("notifications/progress", params)):
                return


# What an ask may end in besides an approval: the human's no, every "unavailable" reason,
# and what the proxy itself decides around the ask (cancel, DLP, rate limit, server gone).
_DENY_OR_CANCEL: Final = UNAVAILABLE_OUTCOMES | {
    Outcome.DENIED_BY_USER,
    Outcome.DENIED_BY_GRANT,
    Outcome.TIMEOUT,
    Outcome.CANCELLED,
    Outcome.DLP,
    Outcome.RATE_LIMITED,
    Outcome.SERVER_EXITED,
    Outcome.INTERNAL_ERROR,
}


def _result(outcome: Outcome) -> AskResult:
    from aip.proxy.approval.api import AskResult  # not at start-up: the asks may never come

    return AskResult(outcome)
