"""The approval client's book of pending asks: the nonce table, each ask's fallback deadline,
the memory of asks we ended ourselves (to spot a late allow), and ending an ask exactly once.

Shared by the caller's threads (``ask``/``cancel``) and the client thread, under one lock;
``on_done`` always runs outside it. The book never touches the socket: withdrawing an ask the
approver may still hold goes through ``withdraw``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from aip.proxy.approval.api import AskRequest, AskResult, OnDone
from aip.proxy.approval.link import same_id
from aip.shared import logs
from aip.shared.outcomes import Outcome
from aip.shared.protocol.codec import encode
from aip.shared.protocol.messages import Ask, Decision

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

log = logs.get(__name__)

ENDED_MEMORY: Final = 1024  # asks we ended ourselves, remembered to spot a late allow


@dataclass(eq=False, slots=True)
class Pending:
    """An ask in flight: its request, the callback its end goes to, its nonce and frame."""

    request: AskRequest
    on_done: OnDone
    nonce: str
    frame: bytes = b""
    sent_at: float | None = None  # monotonic; None while waiting for the first connection
    hello_resent: bool = False


class AskBook:
    def __init__(
        self,
        *,
        grace_s: float,
        clock: Callable[[], float],
        timeout_s: Callable[[], float],
        withdraw: Callable[[Pending], None],
    ) -> None:
        """``timeout_s()``: the approver's deadline as its welcome said (else the default);
        ``withdraw(entry)`` cancels a sent ask at the approver (client thread)."""
        self._grace_s = grace_s
        self._clock = clock
        self._timeout_s = timeout_s
        self._withdraw = withdraw
        self._lock = threading.Lock()  # guards _pending and _closed
        self._pending: dict[str, Pending] = {}  # nonce -> ask
        self._closed = False
        self._ended: dict[str, str | int] = {}  # nonce -> request_id of asks we denied

    def add(self, entry: Pending) -> bool:
        """False once the book is closed (the caller denies the ask itself)."""
        with self._lock:
            if not self._closed:
                self._pending[entry.nonce] = entry
            return not self._closed

    def close(self) -> bool:
        """Take no more asks; False if the book was closed already."""
        with self._lock:
            was_open = not self._closed
            self._closed = True
        return was_open

    def take_request(self, request_id: str | int) -> list[Pending]:
        """Remove and return the asks of ``request_id`` (a cancel)."""
        with self._lock:
            mine = [e for e in self._pending.values() if same_id(e.request.request_id, request_id)]
            for entry in mine:
                del self._pending[entry.nonce]
        return mine

    def get(self, nonce: str) -> Pending | None:
        with self._lock:
            return self._pending.get(nonce)

    def holds(self, entry: Pending) -> bool:
        with self._lock:
            return self._pending.get(entry.nonce) is entry

    def entries(self) -> list[Pending]:
        with self._lock:
            return list(self._pending.values())

    def unsent(self) -> list[Pending]:
        return [e for e in self.entries() if e.sent_at is None]

    def sent(self) -> list[Pending]:
        return [e for e in self.entries() if e.sent_at is not None]

    def take_decision(self, msg: Decision, session: str) -> Pending | None:
        """The ask ``msg`` answers, removed (used once): only when request_id, nonce, digest
        and session match a sent ask and its fallback deadline has not passed."""
        with self._lock:
            entry = self._pending.get(msg.nonce)
            if (
                entry is None
                or entry.sent_at is None
                or msg.session != session
                or not same_id(entry.request.request_id, msg.request_id)
                or msg.digest != entry.request.digest
                or self._clock() >= self.fallback_at(entry)
            ):
                return None
            del self._pending[msg.nonce]
            return entry

    def take_ended(self, nonce: str) -> str | int | None:
        """The request id of a sent ask we ended ourselves (forgotten once asked)."""
        return self._ended.pop(nonce, None)

    def fallback_at(self, entry: Pending) -> float:
        assert entry.sent_at is not None
        return entry.sent_at + self._timeout_s() + self._grace_s

    def next_deadline(self, connect_by: float | None) -> float | None:
        """The earliest fallback deadline, or the end of the connect grace while asks wait
        for the first connection."""
        entries = self.entries()
        times = [self.fallback_at(e) for e in entries if e.sent_at is not None]
        if connect_by is not None and any(e.sent_at is None for e in entries):
            times.append(connect_by)
        return min(times, default=None)

    def overdue(self, now: float) -> list[Pending]:
        return [e for e in self.sent() if now >= self.fallback_at(e)]

    def done(self, entry: Pending, outcome: Outcome) -> None:
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
            self._withdraw(entry)
        lost = entry.sent_at is not None and outcome is Outcome.APPROVER_UNAVAILABLE
        # Sent, then the connection died: the approver may have logged an allow it could not
        # deliver; the recorder adds a not_forwarded record next to our deny (DESIGN §8).
        call(entry, AskResult(outcome, {"sent_to_approver": True} if lost else {}))

    def end_all(self, outcome: Outcome, *, sent_only: bool = False) -> None:
        for entry in self.sent() if sent_only else self.entries():
            self.done(entry, outcome)


def call(entry: Pending, result: AskResult) -> None:
    try:
        entry.on_done(result)
    except Exception:  # the relay's callback failed; the ask is over either way
        log.exception("on_done failed for ask %r", entry.request.request_id)


def ask_frame(entry: Pending, session: str, agent_id: str) -> bytes:
    """The ``ask`` message of ``entry`` (made once: a re-send sends the same bytes)."""
    req = entry.request
    return encode(
        Ask(session=session, request_id=req.request_id, nonce=entry.nonce, digest=req.digest,
            tool=req.tool, arguments=req.arguments, rule=req.rule, size=req.size,
            agent_id=agent_id, dlp=list(req.dlp), hidden_chars=req.hidden_chars,
            grant=req.grant)
    )  # fmt: skip
