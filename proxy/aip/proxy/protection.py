"""The always-protected paths of one proxy session and the bases relative paths resolve
against (DESIGN §4.5), and the one place that swaps the session's policy state, so a policy
reload, an approver's ``welcome`` (which announces its audit log, on the approval client
thread) and the client's roots (relay thread) never undo each other.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from aip.proxy.relay.session import PolicyState, Session
from aip.shared import logs
from aip.shared.policy.always_protected import always_protected
from aip.shared.policy.decision import Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    from aip.shared.policy.model import Policy
    from aip.shared.policy.ratelimit import RateLimiter

log = logs.get(__name__)

# Audit logs announced over the session's life (an approver restarted with another
# --audit-log adds one); all stay protected. Bounded: a misbehaving approver of our own uid
# cannot grow the root list without end.
MAX_ANNOUNCED: Final = 16


def command_dirs(command: Sequence[str], cwd: str) -> tuple[str, ...]:
    """Every directory named on the server's command line (``/data``, ``.``, ``--root=/x``):
    servers such as server-filesystem resolve relative paths against them."""
    found: list[str] = []
    for arg in command[1:]:
        for value in (arg, arg.partition("=")[2]):
            if not value or "\x00" in value:
                continue
            path = os.path.join(cwd, os.path.expanduser(value))
            if os.path.isdir(path):
                found.append(os.path.normpath(path))
    return tuple(dict.fromkeys(found))


def client_roots(result: object) -> tuple[str, ...]:
    """The directories of a ``roots/list`` result (``file://`` URIs, percent-decoded)."""
    roots = result.get("roots") if isinstance(result, dict) else None
    found: list[str] = []
    for root in roots if isinstance(roots, list) else ():
        uri = root.get("uri") if isinstance(root, dict) else None
        if type(uri) is not str or not uri.startswith("file:"):
            continue
        path = unquote(urlsplit(uri).path)
        if path.startswith("/") and "\x00" not in path:
            found.append(os.path.normpath(path))
    return tuple(dict.fromkeys(found))


class Protection:
    """Builds the session's ``Context`` from (policy path, endpoint, announced audit logs)
    and swaps ``session.state`` whole, under one lock, whenever one of them changes."""

    def __init__(
        self,
        *,
        cwd: str,
        endpoint: str | None,
        extra: Sequence[str] = (),
        command: Sequence[str] = (),
    ) -> None:
        self._cwd = cwd
        self._endpoint = endpoint
        self._extra = tuple(extra)
        self._command_dirs = command_dirs(command, cwd)
        self._client_roots: tuple[str, ...] = ()  # the latest roots/list answer seen
        self._audit_logs: list[str] = []
        self._session: Session | None = None
        self._lock = threading.Lock()

    def context(self, policy_path: str | None) -> Context:
        """The Context for a policy loaded from ``policy_path`` (None: not from a file)."""
        protected = always_protected(policy_path, self._endpoint, self._audit_logs)
        extra = tuple(p for p in self._extra if p and p not in protected)
        bases = tuple(dict.fromkeys((*self._command_dirs, *self._client_roots)))
        return Context(cwd=self._cwd, always_protected=protected + extra, bases=bases)

    def attach(self, session: Session) -> None:
        """The session whose state later swaps replace (made with ``context()``)."""
        self._session = session

    def install(self, policy: Policy, limiter: RateLimiter) -> None:
        """Swap in a reloaded policy with its fresh limiter (one reference assignment: a
        relay thread reads ``session.state`` once per message and sees old or new)."""
        assert self._session is not None
        with self._lock:  # the Context must include an audit log announced meanwhile
            self._session.state = PolicyState(policy, limiter, self.context(policy.path))

    def on_client_roots(self, result: Any) -> None:
        """The client answered the server's ``roots/list`` (relay thread, before the answer
        is forwarded): relative paths now also resolve against these roots."""
        roots = client_roots(result)
        with self._lock:
            if roots == self._client_roots:
                return
            self._client_roots = roots
            self._swap_context()
        log.info("the client declared %d root(s); relative paths resolve against them", len(roots))

    def _swap_context(self) -> None:
        """Keep the policy and limiter, rebuild the Context (under ``_lock``)."""
        if self._session is not None:  # else the first context() takes it
            state = self._session.state
            self._session.state = PolicyState(
                state.policy, state.limiter, self.context(state.policy.path)
            )

    def on_audit_path(self, audit_path: str) -> None:
        """An approver announced its audit log (``welcome``, approval client thread): keep
        the policy and limiter, swap in a Context that protects that log too."""
        if not audit_path.startswith("/"):
            log.warning("ignoring a non-absolute audit log path from the approver")
            return
        with self._lock:
            if audit_path in self._audit_logs:
                return  # every reconnect says it again
            if len(self._audit_logs) >= MAX_ANNOUNCED:
                del self._audit_logs[0]  # the approver we talk to now matters most
            self._audit_logs.append(audit_path)
            self._swap_context()
        log.info("the approver's audit log %s is protected", audit_path)
