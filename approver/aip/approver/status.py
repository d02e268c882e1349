"""The approver's answer to ``aipctl approver status``: a snapshot of the dialog slot, the
queue, the connected proxies and the audit log head, built from the server's own state."""

from __future__ import annotations

import asyncio
import os
from typing import NamedTuple

from aip.approver.audit.decision_log import DecisionLog
from aip.approver.dialogs.choose import Choice
from aip.approver.queue import AskQueue
from aip.approver.scheduler import Ticket
from aip.approver.sessions import SessionTable
from aip.shared.outcomes import Outcome
from aip.shared.protocol.status import DialogStatus, ProxyStatus, StatusReply


class StatusConfig(NamedTuple):
    timeout_s: float
    max_pending: int
    max_pending_session: int
    audit_path: str


def status_snapshot(
    ref: str,
    *,
    choice: Choice,
    active: Ticket | None,
    queue: AskQueue[Ticket],
    sessions: SessionTable,
    decisions: DecisionLog,
    config: StatusConfig,
) -> StatusReply:
    unavailable = ""
    if choice.backend is None:
        outcome = choice.unavailable or Outcome.DIALOG_ERROR
        unavailable = f"{outcome.value}: {choice.why}" if choice.why else outcome.value
    dialog = None
    if active is not None:
        ask, session = active.ask, active.session
        left = active.deadline - asyncio.get_running_loop().time()
        dialog = DialogStatus(
            session=ask.session,
            request_id=ask.request_id,
            agent_id=ask.agent_id or session.agent_id,
            server=session.server,
            tool=ask.tool,  # DLP-redacted on arrival, like everything the dialog shows
            rule=ask.rule,
            shown_at=active.shown_wall,
            seconds_left=round(max(0.0, left), 1),
        )
    # The sink behind DecisionLog keeps its writer as ``log``: its seq is the log's head.
    seq = getattr(getattr(decisions, "log", None), "seq", None)
    return StatusReply(
        ref=ref,
        pid=os.getpid(),
        backend=choice.backend.name if choice.backend is not None else "",
        unavailable=unavailable,
        timeout_s=config.timeout_s,
        queued=queue.waiting(),
        pending=queue.pending(),
        max_pending=config.max_pending,
        max_pending_session=config.max_pending_session,
        proxies=[
            ProxyStatus(
                session=s.sid,
                pid=s.pid,
                agent_id=s.agent_id,
                server=s.server,
                policy=s.policy,
                pending=queue.pending(s.sid),
            )
            for s in sessions
        ],
        dialog=dialog,
        audit_path=config.audit_path,
        audit_available=decisions.available(),
        audit_seq=seq if type(seq) is int else None,
    )
