"""The approval desk in-process, with a scripted backend: deadlines, one slot, exactly once."""

from __future__ import annotations

import asyncio

from aip.approver.dialogs.base import Prompt
from aip.approver.dialogs.render import WHOLE, Fit, Limits
from aip.approver.dialogs.verdict import Answer, Verdict
from aip.approver.queue import AskQueue
from aip.approver.scheduler import Scheduler, Ticket
from aip.approver.sessions import Session
from aip.shared.outcomes import Outcome
from aip.shared.protocol.messages import HumanDecision, PolicyRef
from tests.support.approverproc import ask, new_session


class Scripted:
    """Shows nothing; answers after ``delay_s`` (None: never); closing takes ``close_s``."""

    name = "scripted"

    def __init__(
        self,
        answer: Answer = Answer.ALLOW,
        delay_s: float | None = 0.0,
        close_s: float = 0.0,
        fit: Fit = WHOLE,
    ) -> None:
        self.answer, self.delay_s, self.close_s, self.fit = answer, delay_s, close_s, fit
        self.shown: list[Prompt] = []
        self.open = 0
        self.max_open = 0

    async def show(self, prompt: Prompt) -> Verdict:
        self.shown.append(prompt)
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            if self.delay_s is None:
                await asyncio.Event().wait()
            await asyncio.sleep(self.delay_s or 0)
            return Verdict(self.answer)
        finally:
            if self.close_s:  # a dialog that is slow to go away keeps the slot busy
                await asyncio.shield(asyncio.sleep(self.close_s))
            self.open -= 1


async def shown(backend: Scripted, count: int) -> None:
    """Wait until ``count`` dialogs have been opened (bounded)."""
    async with asyncio.timeout(5):
        while len(backend.shown) < count:  # noqa: ASYNC110 - polls the scripted backend, bounded
            await asyncio.sleep(0.002)


def _session(sid: str) -> Session:
    return Session(sid, b"r", 1, 0, 1, 1, "agent", "srv", PolicyRef(name="n", sha256="s"), "u")


class Desk:
    def __init__(self, backend: Scripted, timeout_s: float) -> None:
        self.results: list[tuple[Ticket, Outcome, HumanDecision | None, int]] = []
        self.done = asyncio.Event()
        self.scheduler = Scheduler(
            backend, AskQueue(per_minute=6000, burst=1000), self._finish, timeout_s
        )

    def _finish(self, t: Ticket, o: Outcome, h: HumanDecision | None, w: int) -> None:
        self.results.append((t, o, h, w))
        self.done.set()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.results) < count:
                self.done.clear()
                await self.done.wait()

    def outcome(self, request_id: object) -> Outcome:
        return next(o for t, o, _, _ in self.results if t.ask.request_id == request_id)


async def test_an_ask_expiring_in_the_queue_is_never_shown() -> None:
    backend = Scripted(delay_s=None, close_s=0.3)
    desk = Desk(backend, timeout_s=0.3)
    worker = asyncio.ensure_future(desk.scheduler.run())
    s1, s2 = new_session(), new_session()
    desk.scheduler.submit(ask(s1, 1), _session(s1))
    await shown(backend, 1)
    desk.scheduler.submit(ask(s2, 2), _session(s2))
    await desk.until(2)
    worker.cancel()
    assert [pr.request_id for pr in backend.shown] == [1]
    (_t2, o2, h2, w2) = next(r for r in desk.results if r[0].ask.request_id == 2)
    assert o2 is Outcome.TIMEOUT
    assert h2 is None
    assert 250 <= w2 <= 450  # it waited its whole deadline in the queue
    assert desk.outcome(1) is Outcome.TIMEOUT


async def test_one_dialog_at_a_time_and_each_ask_ends_once() -> None:
    backend = Scripted(Answer.DENY, delay_s=0.01)
    desk = Desk(backend, timeout_s=5)
    worker = asyncio.ensure_future(desk.scheduler.run())
    sessions = [new_session() for _ in range(5)]
    for i in range(20):
        sid = sessions[i % 5]
        assert desk.scheduler.submit(ask(sid, i), _session(sid)) is None
    await desk.until(20)
    worker.cancel()
    assert backend.max_open == 1
    assert sorted(t.ask.request_id for t, *_ in desk.results) == list(range(20))
    assert {o for _, o, _, _ in desk.results} == {Outcome.DENIED_BY_USER}
    assert all(h is not None and not h.approved for _, _, h, _ in desk.results)
    assert backend.shown[0].queue_position == 19


async def test_a_pairing_dialog_never_opens_beside_an_ask() -> None:
    """The remote pairing's confirmation takes the same one dialog slot as the asks."""
    backend = Scripted(Answer.DENY, delay_s=0.05)
    desk = Desk(backend, timeout_s=5)
    worker = asyncio.ensure_future(desk.scheduler.run())
    sessions = [new_session() for _ in range(3)]
    for i in range(6):
        assert desk.scheduler.submit(ask(sessions[i % 3], i), _session(sessions[i % 3])) is None
    await shown(backend, 1)
    pairing = backend.shown[0]
    verdicts = await asyncio.gather(*(desk.scheduler.show_alone(pairing) for _ in range(3)))
    await desk.until(6)
    worker.cancel()
    assert backend.max_open == 1
    assert [v.answer for v in verdicts] == [Answer.DENY] * 3
    assert len(backend.shown) == 9


async def test_cancel_drop_and_shutdown() -> None:
    backend = Scripted(delay_s=None)
    desk = Desk(backend, timeout_s=5)
    worker = asyncio.ensure_future(desk.scheduler.run())
    a, b = new_session(), new_session()
    first = ask(a, 1)
    desk.scheduler.submit(first, _session(a))
    desk.scheduler.submit(ask(a, 2), _session(a))
    desk.scheduler.submit(ask(b, 3), _session(b))
    desk.scheduler.submit(ask(b, 4), _session(b))
    await shown(backend, 1)
    assert desk.scheduler.cancel(a, first.nonce) is True  # the open dialog
    await desk.until(1)
    assert desk.outcome(1) is Outcome.CANCELLED
    assert desk.scheduler.drop_session(a) == 1  # the queued one of session a
    await desk.until(2)
    assert desk.outcome(2) is Outcome.CANCELLED
    await shown(backend, 2)  # session b's first ask is on screen
    desk.scheduler.shutdown()
    await desk.until(4)
    assert desk.outcome(3) is Outcome.SHUTDOWN
    assert desk.outcome(4) is Outcome.SHUTDOWN
    worker.cancel()
    await asyncio.wait([worker])
    assert backend.open == 0


async def test_a_withheld_prompt_ends_too_large_to_review_whatever_comes_back() -> None:
    """Allow withheld (the text does not fit this backend and it cannot scroll): an "allow"
    from the backend, a deny or the deadline all end as too_large_to_review, no human
    decision recorded."""
    small = Fit(Limits(chars=2000, lines=20))
    for answer, delay_s in ((Answer.ALLOW, 0.0), (Answer.DENY, 0.0), (Answer.ALLOW, None)):
        backend = Scripted(answer, delay_s=delay_s, fit=small)
        desk = Desk(backend, timeout_s=0.5)
        worker = asyncio.ensure_future(desk.scheduler.run())
        s = new_session()
        desk.scheduler.submit(ask(s, 1, content="A" * 5000), _session(s))
        await desk.until(1)
        worker.cancel()
        await asyncio.wait([worker])
        (prompt,) = backend.shown
        assert prompt.withheld.startswith("too large to review in this dialog")
        assert "ALLOW IS WITHHELD" in prompt.text
        assert small.dialog.holds(prompt.text.split("\n"))
        assert desk.results[0][1] is Outcome.TOO_LARGE_TO_REVIEW
        assert desk.results[0][2] is None


async def test_a_crashing_backend_is_a_dialog_error() -> None:
    class Broken(Scripted):
        async def show(self, prompt: Prompt) -> Verdict:
            raise FileNotFoundError("zenity")

    desk = Desk(Broken(), timeout_s=5)
    worker = asyncio.ensure_future(desk.scheduler.run())
    s = new_session()
    desk.scheduler.submit(ask(s, 1), _session(s))
    await desk.until(1)
    worker.cancel()
    assert desk.results[0][1] is Outcome.DIALOG_ERROR
    assert desk.results[0][2] is None
