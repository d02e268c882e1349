"""The approval desk: admits asks, owns their deadlines, shows one dialog at a time.

Every admitted ask ends exactly once through ``finish`` (answered, timed out, cancelled or
shut down). Deadline = arrival + timeout on the loop's monotonic clock: an ask that expires
while queued is denied without being shown; an open dialog is closed at its deadline.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from aip.approver.dialogs import render
from aip.approver.dialogs.base import Backend, Prompt
from aip.approver.dialogs.escape import show_name, show_value
from aip.approver.dialogs.verdict import NOT_OFFERED, Answer, RememberOffer, Verdict
from aip.approver.extra_socket import origin_label
from aip.approver.queue import AskQueue
from aip.approver.sessions import Session
from aip.shared.audit.stamp import rfc3339
from aip.shared.outcomes import Outcome
from aip.shared.protocol.messages import Ask, HumanDecision

log = logging.getLogger(__name__)

_ANSWERS: Final = {
    Answer.ALLOW: Outcome.HUMAN_APPROVED,
    Answer.DENY: Outcome.DENIED_BY_USER,
    Answer.ERROR: Outcome.DIALOG_ERROR,
}


@dataclass(eq=False, slots=True)
class Ticket:
    ask: Ask
    session: Session
    arrival: float  # loop time
    deadline: float
    ordinal: int = 0
    timer: asyncio.TimerHandle | None = None
    dialog: asyncio.Future[None] | None = None  # set while on screen
    shown_at: float | None = None
    shown_wall: str = ""
    stop_reason: Outcome = Outcome.CANCELLED  # why an open dialog was closed early
    finished: bool = False
    offer: RememberOffer = NOT_OFFERED  # what its dialog offered to remember
    verdict: Verdict | None = None  # the human's answer (with what to remember), if any
    key: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.ask.session, self.ask.nonce)


# finish callback: (ticket, outcome, human decision or None, queue wait in ms)
Finish = Callable[[Ticket, Outcome, HumanDecision | None, int], None]
# what a dialog may offer to remember: (ticket, withheld) -> offer (aip.approver.grants)
Offer = Callable[[Ticket, bool], RememberOffer]


class Scheduler:
    def __init__(
        self,
        backend: Backend,
        queue: AskQueue[Ticket],
        finish: Finish,
        timeout_s: float,
        offer: Offer | None = None,
    ) -> None:
        self._backend = backend
        self._offer = offer
        self._queue = queue
        self._finish_cb = finish
        self.timeout_s = timeout_s
        self._tickets: dict[tuple[str, str], Ticket] = {}
        self._wake = asyncio.Event()
        self._active: Ticket | None = None
        self._slot = asyncio.Lock()  # the one dialog on screen: an ask's, or a pairing's

    @property
    def active(self) -> Ticket | None:
        return self._active

    def knows(self, session: str, nonce: str) -> bool:
        return (session, nonce) in self._tickets

    def submit(self, ask: Ask, session: Session) -> Outcome | None:
        """Queue an ask; returns the refusal outcome (queue full, over budget) or None."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        refused, ordinal = self._queue.admit(ask.session, now)
        if refused is not None:
            return refused
        ticket = Ticket(ask, session, now, now + self.timeout_s, ordinal)
        ticket.timer = loop.call_at(ticket.deadline, self._expire, ticket)
        self._tickets[ticket.key] = ticket
        self._queue.push(ask.session, ticket)
        self._wake.set()
        return None

    def cancel(self, session: str, nonce: str, reason: Outcome = Outcome.CANCELLED) -> bool:
        ticket = self._tickets.get((session, nonce))
        if ticket is None:
            return False
        self._stop(ticket, reason)
        return True

    def drop_session(self, session: str, reason: Outcome = Outcome.CANCELLED) -> int:
        """The proxy left (bye, disconnect): its asks end without a reply."""
        mine = [t for t in self._tickets.values() if t.ask.session == session]
        for ticket in mine:
            self._stop(ticket, reason)
        self._queue.forget(session)
        return len(mine)

    def shutdown(self) -> None:
        """Deny everything pending with SHUTDOWN at once; the open dialog is being closed."""
        for ticket in list(self._tickets.values()):
            if ticket.dialog is not None:
                ticket.dialog.cancel()
            else:
                self._queue.unqueue(ticket.ask.session, ticket)
            self._end(ticket, Outcome.SHUTDOWN, None)

    async def run(self) -> None:
        """The one dialog slot: show queued asks one after another, forever."""
        while True:
            ticket = self._queue.pop_next()
            if ticket is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            async with self._slot:
                await self._show(ticket)

    async def show_alone(self, prompt: Prompt) -> Verdict:
        """A dialog that is not an ask (a remote pairing): it takes the one dialog slot, so
        it never appears beside an ask's dialog; the caller bounds it with its own timeout."""
        async with self._slot:
            return await self._backend.show(prompt)

    # -- internals ----------------------------------------------------------------------

    def _stop(self, ticket: Ticket, reason: Outcome) -> None:
        if ticket.finished:
            return
        if ticket.dialog is not None:  # on screen: close it, ``_show`` finishes the ticket
            ticket.stop_reason = reason
            ticket.dialog.cancel()
            return
        self._queue.unqueue(ticket.ask.session, ticket)
        self._end(ticket, reason, None)

    def _expire(self, ticket: Ticket) -> None:
        if ticket.dialog is None and not ticket.finished:
            log.info("ask %s expired while queued; never shown", ticket.ask.request_id)
            self._queue.unqueue(ticket.ask.session, ticket)
            self._end(ticket, Outcome.TIMEOUT, None)

    def _end(self, ticket: Ticket, outcome: Outcome, human: HumanDecision | None) -> None:
        if ticket.finished:
            return
        ticket.finished = True
        if ticket.timer is not None:
            ticket.timer.cancel()
        self._tickets.pop(ticket.key, None)
        self._queue.finish(ticket.ask.session)
        loop_now = asyncio.get_running_loop().time()
        waited = (ticket.shown_at if ticket.shown_at is not None else loop_now) - ticket.arrival
        self._finish_cb(ticket, outcome, human, max(0, round(waited * 1000)))

    async def _show(self, ticket: Ticket) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if ticket.finished:
            return
        if now >= ticket.deadline:
            self._end(ticket, Outcome.TIMEOUT, None)
            return
        try:
            prompt = self._prompt(ticket, now)
        except Exception:  # the ask's boundary: what cannot be rendered cannot be shown
            log.exception("cannot render ask %s", ticket.ask.request_id)
            self._end(ticket, Outcome.DIALOG_ERROR, None)
            return
        ticket.shown_at, ticket.shown_wall = now, rfc3339()
        ticket.dialog = dialog = asyncio.ensure_future(self._dialog(ticket, prompt))
        self._active = ticket
        try:
            await asyncio.wait([dialog])  # unlike ``await``, never eats our own cancel
        except asyncio.CancelledError:
            dialog.cancel()  # the worker itself is stopping: close the dialog first
            await asyncio.wait([dialog])
            raise
        finally:
            self._active = None

    async def _dialog(self, ticket: Ticket, prompt: Prompt) -> None:
        """Show one dialog until its answer or deadline (then it is killed), and end the
        ticket right here, so the reply does not wait for the worker to wake up."""
        try:
            async with asyncio.timeout_at(ticket.deadline):
                verdict = await self._backend.show(prompt)
        except TimeoutError:
            if prompt.withheld:
                self._after_dialog(ticket, Outcome.TOO_LARGE_TO_REVIEW, shown=False)
            else:
                self._after_dialog(ticket, Outcome.TIMEOUT, shown=True)
        except asyncio.CancelledError:  # cancel, proxy gone or shutdown: closed early
            self._after_dialog(ticket, ticket.stop_reason, shown=False)
            raise
        except Exception:  # a task boundary: a backend that breaks is a dialog error
            log.exception("dialog %s failed", self._backend.name)
            self._after_dialog(ticket, Outcome.DIALOG_ERROR, shown=False)
        else:
            answer = verdict.answer
            outcome = _ANSWERS[answer]
            if prompt.withheld and outcome is not Outcome.DIALOG_ERROR:
                # Allow was never offered: whatever came back (a program may say anything),
                # the request was too large to review, not decided by a human.
                if answer is Answer.ALLOW:
                    log.warning("dialog %s allowed a withheld ask; denied", self._backend.name)
                self._after_dialog(ticket, Outcome.TOO_LARGE_TO_REVIEW, shown=False)
                return
            if outcome is not Outcome.DIALOG_ERROR:
                ticket.verdict = verdict  # what to remember is checked by the grant desk
            self._after_dialog(ticket, outcome, shown=outcome is not Outcome.DIALOG_ERROR)

    def _after_dialog(self, ticket: Ticket, outcome: Outcome, *, shown: bool) -> None:
        """``shown``: a human saw a dialog that ended in a decision or at the deadline."""
        human = None
        if shown and ticket.shown_at is not None:
            elapsed_s = asyncio.get_running_loop().time() - ticket.shown_at
            human = HumanDecision(
                approved=outcome is Outcome.HUMAN_APPROVED,
                response_time_ms=max(0, round(elapsed_s * 1000)),
                dialog_shown_at=ticket.shown_wall,
            )
        ticket.dialog = None
        self._end(ticket, outcome, human)

    def _prompt(self, ticket: Ticket, now: float) -> Prompt:
        ask, session = ticket.ask, ticket.session
        agent_id = ask.agent_id or session.agent_id
        facts = render.DialogFacts(
            tool=ask.tool,
            agent_id=agent_id,
            server=session.server,
            rule=ask.rule,
            ordinal=ticket.ordinal,
            seconds_left=max(1, math.floor(ticket.deadline - now)),
            waiting=self._queue.waiting(),
            hidden_chars=ask.hidden_chars,
            origin=origin_label(session.origin),
        )
        shown = render.render(facts, ask.arguments, self._backend.fit)
        if shown.withheld:
            log.info("ask %s: Allow withheld, %s", ask.request_id, shown.withheld)
        if self._offer is not None:
            ticket.offer = self._offer(ticket, bool(shown.withheld))
        return Prompt(
            request_id=ask.request_id,
            agent_id=show_value(agent_id),
            server=show_value(session.server),
            tool=show_name(ask.tool),
            arguments=render.display_arguments(ask.arguments),
            text=shown.text,
            rule=show_value(ask.rule),
            seconds_left=facts.seconds_left,
            queue_position=facts.waiting,
            scroll=shown.scroll,
            withheld=shown.withheld,
            remember=ticket.offer,
        )
