"""The decision record of one answered ask (DESIGN §8), as the approval server writes it
before replying; a remote session's records carry its ``origin`` (DESIGN §10)."""

from __future__ import annotations

from typing import Any

from aip.approver.sessions import Session
from aip.shared.audit.record import decision_record
from aip.shared.outcomes import Outcome
from aip.shared.policy.model import Mode
from aip.shared.protocol.messages import Ask, HumanDecision


def ask_record(
    ask: Ask,
    session: Session,
    outcome: Outcome,
    human: HumanDecision | None,
    wait_ms: int,
    grant_id: str | None,
) -> dict[str, Any]:
    """``grant_id``: the grant that answered instead of a human, if one did."""
    record = decision_record(
        outcome=outcome,
        session=ask.session,
        agent_id=ask.agent_id or session.agent_id,
        user=session.user,
        server=session.server,
        pid=session.pid,
        tool=ask.tool,
        arguments=ask.arguments,
        request_id=ask.request_id,
        policy={"name": session.policy.name, "sha256": session.policy.sha256},
        rule=ask.rule,
        mode=Mode.ENFORCE.value,  # DESIGN §4.8: only enforce mode asks (monitor forwards)
        dlp=ask.dlp,  # the rules the proxy's (and our) DLP scan fired on the arguments
        human=human,
        queue_wait_ms=wait_ms,
        grant_id=grant_id,
    )
    if session.origin is not None:
        record["origin"] = session.origin.to_json()
    return record
