"""One proxy session: the state both relay threads share, and the only ways to reach a side.

Tracks the client requests forwarded to the server and not yet answered (answered with
``server_exited`` when the server goes), and the server's requests to the client (so only
real answers pass back). Every write to the host or the server goes through here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from aip.proxy.audit.recorder import Recorder, record_decision
from aip.proxy.stdio import Wire
from aip.shared import logs, slotclass
from aip.shared.jsonrpc import Kind, Message, RequestId, RpcReject, audit_id, error_line
from aip.shared.outcomes import Outcome
from aip.shared.policy.decision import Context, Decision
from aip.shared.policy.model import Policy
from aip.shared.policy.ratelimit import RateLimiter
from aip.shared.slotclass import FrozenSlotted, Slotted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, Protocol

    from aip.shared.policy.model import ToolRule

log = logs.get(__name__)

MAX_SERVER_REQUESTS: Final = 4096  # server -> client requests awaiting the client's answer
_REQUEST: Final = Kind.REQUEST  # a module global: an Enum class attribute costs a lookup


class PolicyState(FrozenSlotted):
    """What one loaded policy decides with. A reload (aip.proxy.reload) swaps the whole
    object, so a relay thread that reads ``session.state`` once sees one consistent set."""

    __slots__ = ("context", "limiter", "policy")
    policy: Policy
    limiter: RateLimiter  # keyed by rule index: belongs to exactly this policy
    context: Context

    def __init__(self, policy: Policy, limiter: RateLimiter, context: Context) -> None:
        slotclass.init(self, "policy", policy)
        slotclass.init(self, "limiter", limiter)
        slotclass.init(self, "context", context)


class Pending(Slotted):  # made per forwarded request: a frozen __init__ costs more
    """A forwarded client request awaiting the server's response."""

    __slots__ = ("method", "tool")
    method: str  # normalized
    tool: str | None

    def __init__(self, method: str, tool: str | None) -> None:
        self.method = method
        self.tool = tool


if TYPE_CHECKING:  # for the type checker only: typing stays out of start-up

    class AskDesk(Protocol):
        """What the relay and the reloader call on the session's asks in flight
        (``aip.proxy.relay.asks.Asks`` is the one implementation; it is handed to the session by
        the runner, so the session names only this interface)."""

        def is_pending(self, request_id: RequestId) -> bool: ...

        def start(
            self, msg: Message, decision: Decision, tool: str | None, dlp: list[str] | None = None
        ) -> None: ...

        def cancel(self, request_id: RequestId) -> None: ...

        def connect_soon(self) -> None: ...

        def policy_changed(self, name: str, sha256: str) -> None: ...


class Session:
    def __init__(
        self,
        *,
        policy: Policy,
        limiter: RateLimiter,
        context: Context,
        recorder: Recorder,
        host: Wire,
        server: Wire,
        agent_id_fixed: bool,
    ) -> None:
        self.state = PolicyState(policy, limiter, context)  # one attribute: swapped atomically
        self.recorder = recorder
        self.host = host
        self.server = server
        self.agent_id_fixed = agent_id_fixed  # --agent-id / $AIP_AGENT_ID beat clientInfo
        self.asks: AskDesk | None = None  # set by the runner once the approval client exists
        # The client answered roots/list: called with the result before it is forwarded.
        self.on_client_roots: Callable[[Any], None] | None = None
        self._lock = threading.Lock()
        self._pending: dict[RequestId, Pending] = {}
        # insertion-ordered, so a server that never sees answers cannot grow it without bound
        self._server_requests: dict[RequestId, str] = {}
        self._closed = False  # the server is gone: nothing more is forwarded
        # What a grant binds (docs/grants.md): the digest of the server's command line (set
        # by the runner) and of each tool's tools/list entry as last relayed (normalized
        # name -> sha256; written by the server pump, read by asks: single dict operations).
        self.server_sha256 = ""
        self.tool_digests: dict[str, str] = {}

    # ---- the policy in effect (replaced whole on reload) ----

    @property
    def policy(self) -> Policy:
        return self.state.policy

    @property
    def limiter(self) -> RateLimiter:
        return self.state.limiter

    @property
    def context(self) -> Context:
        return self.state.context

    def give_back(self, rule: ToolRule) -> None:
        """Return a reserved rate-limit token, unless the policy was reloaded since: the
        token came from the old policy's limiter, which is gone with it."""
        state = self.state
        rules = state.policy.tool_rules
        if rule.index < len(rules) and rules[rule.index] is rule:
            state.limiter.give_back(rule)

    # ---- client -> server ----

    def is_in_flight(self, request_id: RequestId) -> bool:
        # No lock: a dict lookup is atomic (the check and a later insert were never one step).
        return request_id in self._pending

    def forward(self, msg: Message, method: str, tool: str | None) -> bool:
        """Send a checked message to the server; a request whose send fails (server gone) is
        answered ``server_exited`` so the client never waits forever."""
        request = msg.kind is _REQUEST
        if request:
            assert msg.id is not None
            with self._lock:
                closed = self._closed
                if not closed:
                    self._pending[msg.id] = Pending(method, tool)
            if closed:
                self.reply_error(msg.id, Outcome.SERVER_EXITED, tool=tool)
                return False
        if self.server.write(msg.wire + b"\n"):
            return True
        if request and msg.id is not None and self.take_pending(msg.id):
            self.reply_error(msg.id, Outcome.SERVER_EXITED, tool=tool)
        return False

    def take_pending(self, request_id: RequestId | None) -> Pending | None:
        if request_id is None:
            return None
        with self._lock:
            return self._pending.pop(request_id, None)

    # ---- server -> client ----

    def note_server_request(self, request_id: RequestId, method: str = "") -> None:
        """A server -> client request; ``method`` (normalized) says what its answer means."""
        with self._lock:
            self._server_requests[request_id] = method
            if len(self._server_requests) > MAX_SERVER_REQUESTS:  # forget the oldest
                del self._server_requests[next(iter(self._server_requests))]

    def take_server_request(self, request_id: RequestId | None) -> str | None:
        """The method of the server request ``request_id`` answers (once), else None."""
        with self._lock:
            return self._server_requests.pop(request_id, None)  # type: ignore[arg-type]

    # ---- replies to the client ----

    def reply_error(
        self,
        request_id: RequestId | None,
        outcome: Outcome,
        *,
        tool: str | None = None,
        detail: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.host.write(error_line(request_id, outcome, tool=tool, detail=detail, extra=extra))

    def reject(self, exc: RpcReject) -> None:
        """A refused client line: record it, answer it with its own id (DESIGN §5)."""
        shown = audit_id(exc.request_id)
        log.warning("rejected client line (id=%r): %s", shown, exc.detail)
        self.record(exc.outcome, request_id=shown, detail=exc.detail)
        self.reply_error(exc.request_id, exc.outcome, detail=exc.detail)

    def record(self, outcome: Outcome, **fields: Any) -> None:
        record_decision(self.recorder, outcome, **fields)

    def set_client_name(self, name: object) -> None:
        if self.agent_id_fixed or type(name) is not str or not name:
            return
        # clientInfo.name is client text: every record, ask and hello carries it (DLP first)
        shown = self.recorder.redact(name)
        self.recorder.agent_id = (
            f"{shown if isinstance(shown, str) else '?'}-{self.recorder.session[:6]}"
        )

    # ---- end of the session ----

    def close(self, on_closed: Callable[[], None] | None = None) -> None:
        """The server is gone: answer every forwarded request still waiting."""
        with self._lock:
            self._closed = True
            orphans = list(self._pending.items())
            self._pending.clear()
        for request_id, pending in orphans:
            if pending.tool is not None:
                self.record(Outcome.SERVER_EXITED, tool=pending.tool, request_id=request_id)
            self.reply_error(request_id, Outcome.SERVER_EXITED, tool=pending.tool)
        if on_closed is not None:
            on_closed()

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed
