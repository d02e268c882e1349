"""The replying half of the approval server: decisions recorded then sent, audit batches
acked, welcome and status. A base class of ``server.ApprovalServer``, whose state it uses
(declared here for the type checker); split out to keep server.py readable (DESIGN §6, §8).
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from aip.approver.ask_record import ask_record
from aip.approver.audit.decision_log import DecisionLog
from aip.approver.audit.writer import AuditUnavailable
from aip.approver.dialogs.choose import Choice
from aip.approver.grants.desk import GrantDesk
from aip.approver.grants.model import Grant
from aip.approver.queue import AskQueue
from aip.approver.remote.bridge import stamp
from aip.approver.scheduler import Scheduler, Ticket
from aip.approver.server_config import ServerConfig
from aip.approver.sessions import Session, SessionTable
from aip.approver.status import StatusConfig, status_snapshot
from aip.shared.outcomes import Outcome
from aip.shared.protocol.frames import ToProxy
from aip.shared.protocol.messages import (
    PROTO,
    Ask,
    Audit,
    AuditAck,
    Decision,
    HumanDecision,
    Welcome,
)
from aip.shared.protocol.status import StatusReply

log = logging.getLogger("aip.approver.server")  # one logger name for the server's lines


class Replies:
    _config: ServerConfig
    _choice: Choice
    _log: DecisionLog
    _grants: GrantDesk
    _queue: AskQueue[Ticket]
    _scheduler: Scheduler | None
    _sessions: SessionTable

    if TYPE_CHECKING:  # ApprovalServer's (server.py): declared for the type checker only

        def _send(self, route: bytes, msg: ToProxy) -> None: ...

        def _spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...

    def _finished(
        self, ticket: Ticket, outcome: Outcome, human: HumanDecision | None, wait_ms: int
    ) -> None:
        self._spawn(self._deliver(ticket.ask, ticket.session, outcome, human, wait_ms, ticket))

    async def _deliver(
        self,
        ask: Ask,
        session: Session,
        outcome: Outcome,
        human: HumanDecision | None,
        wait_ms: int,
        by: Ticket | Grant | None = None,
    ) -> None:
        """Record, then reply: an allow leaves only once its record is durable. ``by``: the
        grant that answered, or the ticket whose human answer may create one."""
        grant_id = by.id if isinstance(by, Grant) else None
        record = ask_record(ask, session, outcome, human, wait_ms, grant_id)
        allows = outcome in (Outcome.HUMAN_APPROVED, Outcome.GRANTED)
        try:
            await self._log.record(record, durable=allows)
        except Exception:  # a task boundary: whatever broke the log, fail closed
            log.exception("could not record the decision on ask %s", ask.request_id)
            if allows:
                outcome, human = Outcome.AUDIT_UNAVAILABLE, None
        else:
            self._grants.after(by, human)
        if outcome is Outcome.CANCELLED:
            return  # the proxy withdrew the ask (or is gone): nobody waits for a reply
        reply = Decision(
            session=ask.session,
            request_id=ask.request_id,
            nonce=ask.nonce,
            digest=ask.digest,
            outcome=outcome,
            human_decision=human,
            queue_wait_ms=wait_ms,
        )
        self._send(session.route, reply)

    def _ingest(self, session: Session, msg: Audit) -> None:
        """Written and acked where received: no task (and loop pass) per message; the
        writer only calls write(), its fsync is the committer's (group commit)."""
        try:
            rseqs = self._log.ingest(stamp(msg.records, session.origin))
        except AuditUnavailable as exc:  # expected while the log is down: no ack, no trace
            log.debug("audit batch %d of session %s not written: %s", msg.batch, msg.session, exc)
            return
        except Exception:  # one message's boundary: no ack, the proxy keeps its spool
            log.exception("could not ingest audit batch %d of session %s", msg.batch, msg.session)
            return
        self._send(session.route, AuditAck(session=msg.session, batch=msg.batch, rseqs=rseqs))

    def _welcome(self, session: Session) -> Welcome:
        c = self._config
        limits: dict[str, Any] = {"timeout_s": c.timeout_s, "max_ask_bytes": c.max_ask_bytes}
        return Welcome(session=session.sid, audit_path=c.audit_path, proto=PROTO, **limits)

    def _status(self, ref: str) -> StatusReply:
        return status_snapshot(
            ref,
            choice=self._choice,
            active=self._scheduler.active if self._scheduler is not None else None,
            queue=self._queue,
            sessions=self._sessions,
            decisions=self._log,
            config=StatusConfig(
                self._config.timeout_s,
                self._config.max_pending,
                self._config.max_pending_session,
                self._config.audit_path,
            ),
        )
