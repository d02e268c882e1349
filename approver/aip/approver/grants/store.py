"""The approver's grants, in memory only: lookup on each ask, expiry, revocation.

Pure data and logic: the clock is injected (the loop's monotonic time in the approver, a
fake in tests) and every change is handed to ``emit`` as an audit event; the store never
writes anything itself. Expiry is checked lazily, at the next ask, listing or sweep, so a
grant is never used past its deadline even when nothing sweeps.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aip.approver.grants.binding import AskKey, matches, same_slot
from aip.approver.grants.model import Expiry, Grant, Kind, Revoker

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GrantEvent:
    """``kind``: grant_created / grant_expired / grant_revoked; ``fields``: its own fields."""

    kind: str
    grant: Grant
    fields: dict[str, Any] = field(default_factory=dict)


Emit = Callable[[GrantEvent], None]


class GrantStore:
    def __init__(self, clock: Callable[[], float], emit: Emit) -> None:
        self._clock = clock
        self._emit = emit
        self._grants: dict[str, Grant] = {}

    def __len__(self) -> int:
        return len(self._grants)

    def add(self, grant: Grant) -> None:
        self._grants[grant.id] = grant
        self._emit(GrantEvent("grant_created", grant))

    def get(self, grant_id: str) -> Grant | None:
        self.sweep()
        return self._grants.get(grant_id)

    def grants(self) -> list[Grant]:
        self.sweep()
        return list(self._grants.values())

    def answer(self, key: AskKey) -> Grant | None:
        """The grant that answers this ask, its use counted; None: ask a human. A deny-grant
        wins over an allow-grant (a human said both: the safer one). Grants of the same agent,
        server, tool and rule that the asking session shows changed (policy reloaded, server
        command or tool description changed) are revoked on the way."""
        self.sweep()
        found: Grant | None = None
        for grant in list(self._grants.values()):
            if not same_slot(grant.binding, key):
                continue
            _pin_description(grant, key)
            changed = _changed(grant, key)
            if changed is not None:
                self._end_revoked(grant, changed, None)
                continue
            if matches(grant.binding, key) and (found is None or grant.kind is Kind.DENY):
                found = grant
        if found is not None:
            found.uses += 1
            found.last_used = self._clock()
        return found

    def after_use(self, grant: Grant) -> None:
        """Once the answer it gave is recorded: a grant that spent its last use ends."""
        if grant.uses >= grant.max_uses and grant.id in self._grants:
            self._end_expired(grant, Expiry.USES)

    def next_due(self) -> float | None:
        """When the next grant runs out of time or idles out (monotonic); None: no grant."""
        return min(
            (min(g.deadline, g.last_used + g.idle_s) for g in self._grants.values()), default=None
        )

    def sweep(self) -> None:
        now = self._clock()
        for grant in list(self._grants.values()):
            if now >= grant.deadline:
                self._end_expired(grant, Expiry.TIME)
            elif now - grant.last_used >= grant.idle_s:
                self._end_expired(grant, Expiry.IDLE)
            elif grant.uses >= grant.max_uses:
                self._end_expired(grant, Expiry.USES)

    def end_session(self, session: str) -> None:
        """The proxy session closed: its session-scoped grants end (timed ones stay)."""
        for grant in list(self._grants.values()):
            if grant.binding.session == session:
                self._end_expired(grant, Expiry.SESSION_END)

    def policy_changed(self, session: str, policy_sha256: str) -> None:
        """A session said hello with another policy: what it created under the old one ends."""
        for grant in list(self._grants.values()):
            if grant.origin_session == session and grant.binding.policy_sha256 != policy_sha256:
                self._end_revoked(grant, Revoker.POLICY_RELOAD, None)

    def revoke(
        self,
        *,
        ids: Iterable[str] = (),
        session: str | None = None,
        tool: str | None = None,
        everything: bool = False,
        actor: int | None = None,
    ) -> tuple[list[Grant], list[str]]:
        """``aipctl grants revoke``: (revoked grants, ids not found)."""
        self.sweep()
        wanted = set(ids)
        gone: list[Grant] = []
        for grant in list(self._grants.values()):
            b = grant.binding
            if (
                everything
                or grant.id in wanted
                or (session is not None and session in (b.session, grant.origin_session))
                or (tool is not None and b.tool == tool)
            ):
                self._end_revoked(grant, Revoker.CLI, actor)
                gone.append(grant)
        missing = sorted(wanted - {g.id for g in gone})
        return gone, missing

    def close(self) -> None:
        """The approver stops: nothing is remembered across a restart."""
        for grant in list(self._grants.values()):
            self._end_expired(grant, Expiry.RESTART)

    def _end_expired(self, grant: Grant, reason: Expiry) -> None:
        if self._grants.pop(grant.id, None) is not None:
            log.info("grant %s expired (%s) after %d use(s)", grant.id, reason, grant.uses)
            self._emit(GrantEvent("grant_expired", grant, {"reason": reason.value}))

    def _end_revoked(self, grant: Grant, by: Revoker, actor: int | None) -> None:
        if self._grants.pop(grant.id, None) is not None:
            log.info("grant %s revoked (%s)", grant.id, by)
            self._emit(GrantEvent("grant_revoked", grant, {"by": by.value, "actor": actor}))


def _pin_description(grant: Grant, key: AskKey) -> None:
    """A grant made before its proxy relayed any tools/list (the client had not listed the
    tools yet) binds the description its session relays first: that is no change."""
    b = grant.binding
    if not b.tool_sha256 and key.tool_sha256 and key.session == grant.origin_session:
        grant.binding = dataclasses.replace(b, tool_sha256=key.tool_sha256)
        log.info("grant %s: bound to the tool description first seen", grant.id)


def _changed(grant: Grant, key: AskKey) -> Revoker | None:
    """What the session that created ``grant`` now shows differently, if anything. Another
    session of the same agent may run another server under the same name: that only does not
    match, it revokes nothing."""
    if key.session != grant.origin_session:
        return None
    b = grant.binding
    if key.policy_sha256 != b.policy_sha256:
        return Revoker.POLICY_RELOAD
    if key.server_sha256 != b.server_sha256 or key.tool_sha256 != b.tool_sha256:
        return Revoker.SERVER_CHANGED
    return None
