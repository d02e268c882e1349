"""The approver's grants at work: the one object the server and the scheduler call.

- ``check`` (an ask arrived, before it is queued): the grant that answers it, if any;
- ``offer`` (a dialog is about to be shown): what its second step may offer;
- ``answered`` (a human's answer was recorded): create the grant asked for, or refuse it
  (``grant_refused``: it counted once) when it was not offered;
- ``session_gone`` / ``hello`` / ``close``: session grants end, a policy change revokes,
  nothing survives a restart.
Every change is written to the audit log as its own event, through ``record``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aip.approver.dialogs.verdict import (
    NOT_OFFERED,
    Answer,
    Remember,
    RememberOffer,
    Scope,
    Verdict,
)
from aip.approver.grants.binding import AskKey, key_of
from aip.approver.grants.model import Binding, Grant, Kind, clamp_seconds, idle_seconds, max_uses
from aip.approver.grants.offer import offer_for
from aip.approver.grants.store import GrantEvent, GrantStore
from aip.approver.scheduler import Ticket
from aip.approver.sessions import Session
from aip.shared.audit.record import Event, grant_record
from aip.shared.audit.stamp import rfc3339
from aip.shared.policy.names import normalize
from aip.shared.protocol.grants import Grants, GrantsOp, GrantsReply
from aip.shared.protocol.messages import Ask, HumanDecision

log = logging.getLogger(__name__)

Record = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
Spawn = Callable[[Coroutine[Any, Any, None]], None]


class GrantDesk:
    def __init__(self, clock: Callable[[], float], record: Record, spawn: Spawn) -> None:
        self._clock = clock
        self._record = record
        self._spawn = spawn
        self._users: dict[str, str | None] = {}  # session -> user, for the records
        self.store = GrantStore(clock, self._emit)
        self._sweeper: asyncio.Task[None] | None = None

    def key(self, ask: Ask, session: Session) -> AskKey | None:
        agent = ask.agent_id or session.agent_id
        return key_of(ask, agent, session.server, session.policy.sha256)

    def check(self, ask: Ask, session: Session) -> Grant | None:
        key = self.key(ask, session)
        if key is None:
            return None
        self._users[session.sid] = session.user
        return self.store.answer(key)

    def offer(self, ask: Ask, session: Session, *, ordinal: int, withheld: bool) -> RememberOffer:
        remote = session.origin is not None  # a paired remote device: the exact call only
        return offer_for(
            ask, self.key(ask, session), ordinal=ordinal, withheld=withheld, remote=remote
        )

    def offer_ticket(self, ticket: Ticket, withheld: bool) -> RememberOffer:
        """The scheduler's hook; what cannot be worked out is not offered."""
        try:
            return self.offer(ticket.ask, ticket.session, ordinal=ticket.ordinal, withheld=withheld)
        except Exception:
            log.exception("no remember offer for ask %s", ticket.ask.request_id)
            return NOT_OFFERED

    def after(self, by: Ticket | Grant | None, human: HumanDecision | None) -> None:
        """The server's hook once a decision record is written: a grant's use is counted
        (its last use ends it), a human's answer may create a grant."""
        if isinstance(by, Grant):
            self.store.after_use(by)
        elif by is not None and by.verdict is not None:
            ms = human.response_time_ms if human is not None else None
            self.answered(by.ask, by.session, by.verdict, by.offer, ms)

    def answered(
        self,
        ask: Ask,
        session: Session,
        verdict: Verdict,
        offer: RememberOffer,
        response_ms: int | None,
    ) -> None:
        """After the human's own decision record: remember it if asked and offered."""
        wish = verdict.remember
        if wish is None or verdict.answer is Answer.ERROR:
            return
        key = self.key(ask, session)
        why = _refusal(wish, offer, key)
        if why is not None or key is None:
            log.warning("ask %s: not remembered: %s", ask.request_id, why)
            self._write(Event.GRANT_REFUSED, {
                "request_id": ask.request_id, "session": ask.session,
                "agent_id": ask.agent_id or session.agent_id, "tool": ask.tool,
                "server": session.server, "user": session.user, "reason": why or "no facts",
                "asked": f"{wish.scope.value} for {wish.seconds or 'session'}",
                "answer": verdict.answer.value,
            })  # fmt: skip
            return
        kind = Kind.ALLOW if verdict.answer is Answer.ALLOW else Kind.DENY
        seconds = clamp_seconds(wish.seconds)
        now = self._clock()
        self._users[session.sid] = session.user
        binding = Binding(
            agent_id=key.agent_id,
            session=ask.session if wish.seconds is None else None,
            server=key.server,
            server_sha256=key.server_sha256,
            tool=key.tool,
            tool_sha256=key.tool_sha256,
            policy_sha256=key.policy_sha256,
            rule=key.rule,
            scope=wish.scope,
            args_sha256=key.args_sha256 if wish.scope is Scope.EXACT else None,
            patterns=dict(offer.like) if wish.scope is Scope.LIKE else {},
        )
        grant = Grant(
            id="g-" + secrets.token_hex(6),
            kind=kind,
            binding=binding,
            origin_session=ask.session,
            created_by_request_id=ask.request_id,
            created_at=rfc3339(),
            expires_at=rfc3339(time.time() + seconds),
            deadline=now + seconds,
            max_uses=max_uses(wish.scope),
            idle_s=idle_seconds(),
            last_used=now,
            response_time_ms=response_ms,
        )
        self.store.add(grant)
        self._arm()
        log.info("grant %s: %s %s of %s for %d s", grant.id, kind, wish.scope, key.tool, seconds)

    def used(self, grant: Grant) -> None:
        self.store.after_use(grant)

    def session_gone(self, sid: str) -> None:
        self.store.end_session(sid)

    def hello(self, session: Session) -> None:
        self._users[session.sid] = session.user
        self.store.policy_changed(session.sid, session.policy.sha256)

    def control(self, msg: Grants) -> GrantsReply:
        """``aipctl grants``: list, show or revoke (taking effect on the next ask)."""
        if msg.op is GrantsOp.LIST:
            found = self.store.grants()
            if msg.ids:
                found = [g for g in found if g.id in set(msg.ids)]
            missing = sorted(set(msg.ids) - {g.id for g in found})
            return GrantsReply(ref=msg.ref, grants=[g.to_json() for g in found], missing=missing)
        gone, missing = self.store.revoke(
            ids=msg.ids,
            session=msg.session or None,
            tool=normalize(msg.tool) if msg.tool else None,
            everything=msg.all,
            actor=os.getuid(),
        )
        return GrantsReply(ref=msg.ref, grants=[g.to_json() for g in gone], missing=missing)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.store.close()

    def _arm(self) -> None:
        """Expiry is recorded when it happens, not only at the next ask: one timer task
        sleeps until the next grant is due and ends when no grant is left."""
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def _sweep_loop(self) -> None:
        while (due := self.store.next_due()) is not None:
            await asyncio.sleep(max(0.01, due - self._clock()))
            self.store.sweep()

    def _emit(self, event: GrantEvent) -> None:
        g, b = event.grant, event.grant.binding
        fields: dict[str, Any] = {
            "grant_id": g.id, "kind": g.kind.value, "agent_id": b.agent_id,
            "session": g.origin_session, "server": b.server, "tool": b.tool,
            "user": self._users.get(g.origin_session),
        }  # fmt: skip
        if event.kind == "grant_created":
            shown = g.to_json()
            fields.update(
                scope=shown["scope"], binding=shown["binding"], expires_at=g.expires_at,
                max_uses=g.max_uses, idle_s=g.idle_s,
                created_by_request_id=g.created_by_request_id,
            )  # fmt: skip
            if g.response_time_ms is not None:
                fields["response_time_ms"] = g.response_time_ms
        else:
            fields.update(event.fields, uses=g.uses)
        self._write(Event(event.kind), fields)

    def _write(self, event: Event, fields: dict[str, Any]) -> None:
        self._spawn(self._record(grant_record(event, **fields)))


def _refusal(wish: Remember, offer: RememberOffer, key: AskKey | None) -> str | None:
    if key is None:
        return "the ask carries no grant facts"
    if not offer.offered:
        return offer.why_not or "not offered"
    if wish.scope not in offer.scopes():
        return f"{wish.scope.value} was not offered"
    return None
