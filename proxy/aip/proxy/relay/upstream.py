"""Host -> server pump: every client line is parsed strictly, decided, then forwarded, answered
with an error, dropped (notifications), or handed to a human (asks).

What reaches the server is the line the client wrote, when the checked message is that line's
one reading (aip.shared.jsontext); a message the policy changed (DLP redaction) is
re-serialized. Every refusal answers the message's own id when one can be read, and is recorded.
"""

from __future__ import annotations

from aip.proxy.relay import dlp_filter
from aip.proxy.relay.session import Session
from aip.proxy.stdio import Oversize, read_bursts
from aip.shared import logs
from aip.shared.jsonrpc import (
    Kind,
    Message,
    RpcReject,
    check_tool_call,
    parse_line,
    valid_id,
)
from aip.shared.jsontext import scan_id
from aip.shared.outcomes import Outcome
from aip.shared.policy import engine
from aip.shared.policy.decision import Decision, Verdict
from aip.shared.policy.names import normalize

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

log = logs.get(__name__)

TOOLS_CALL = "tools/call"
CANCELLED = "notifications/cancelled"
INITIALIZED = "notifications/initialized"
INITIALIZE = "initialize"
DISCOVER = "server/discover"  # MCP 2026-07-28: no initialize, the client names itself in _meta
CLIENT_INFO_META = "io.modelcontextprotocol/clientInfo"
ROOTS_LIST = "roots/list"
# Method names already in normal form (normalize(m) == m, checked here): the hot path skips
# the normalization call for them; any other spelling is normalized as before.
_NORMAL: Final = frozenset(
    m
    for m in (TOOLS_CALL, "tools/list", CANCELLED, INITIALIZED, INITIALIZE, DISCOVER, "ping")
    if normalize(m) == m
)
# Enum members from module globals: a class attribute of an Enum costs a metaclass lookup.
_REQUEST: Final = Kind.REQUEST
_RESPONSE: Final = Kind.RESPONSE
_FORWARD: Final = Verdict.FORWARD
_ALLOWED: Final = Outcome.POLICY_ALLOWED


def pump(session: Session, fd: int, max_line_bytes: int) -> None:
    """Run until the host closes our stdin. Writes of one burst are held and flushed together:
    records first, so a decision is on record before the client or the server sees it.

    A burst of one line is not held: its writes go out in the order it makes them, and every
    path records before it forwards or answers, so each pipe gets the same bytes in the same
    order as when held (one in flight: four hold/flush pairs saved per call)."""
    wires = [w for w in (session.recorder.sink, session.server, session.host) if w is not None]
    audit = session.recorder.outbox  # the burst's records: one spool write
    for burst in read_bursts(fd, max_line_bytes):
        if len(burst) == 1:
            _one_line(session, burst[0], max_line_bytes)
            continue
        audit.hold()
        for wire in wires:
            wire.hold()
        try:
            for line in burst:
                _one_line(session, line, max_line_bytes)
        finally:
            audit.flush()  # spooled before the server or the client sees anything
            for wire in wires:
                wire.flush()
    log.info("agent closed stdin")


def _one_line(session: Session, line: bytes | Oversize, max_line_bytes: int) -> None:
    if isinstance(line, Oversize):
        detail = f"line over {max_line_bytes} bytes (raise --max-line-bytes)"
        session.reject(RpcReject(Outcome.INVALID_REQUEST, scan_id(line.head), detail))
        return
    if not line or line.isspace():  # what strip() would leave empty, without the copy
        return
    try:
        handle_line(session, line)
    except Exception:  # task boundary: never let one message stop the relay
        log.exception("internal error handling a client line; failing closed")
        session.reject(RpcReject(Outcome.INTERNAL_ERROR, scan_id(line.strip()), "internal error"))


def handle_line(session: Session, line: bytes) -> None:
    try:
        msg = parse_line(line)
        raw = msg.method
        method = "" if raw is None else raw if raw in _NORMAL else normalize(raw)
        if method == TOOLS_CALL:
            check_tool_call(msg)
    except RpcReject as exc:
        session.reject(exc)
        return
    if log.isEnabledFor(logs.DEBUG):  # never the params: they may hold secrets
        log.debug("-> %s %s id=%r", msg.kind.value, msg.method, msg.id)
    kind = msg.kind
    if kind is _RESPONSE:
        _client_response(session, msg)
        return
    if kind is _REQUEST and _duplicate(session, msg):
        return
    hits: list[str] | None = None
    state = session.state  # read once: a policy reload swaps it whole (aip.proxy.reload)
    if method != TOOLS_CALL:
        if method == CANCELLED and _cancel_ask(session, msg):
            return
        if method in (INITIALIZE, DISCOVER):
            session.set_client_name(_client_name(msg, method))
        elif method == INITIALIZED and session.asks is not None:
            # Connect to the approver now that the agent is named, but after the handshake:
            # the import of pyzmq in that thread would otherwise hold the GIL while we relay it.
            session.asks.connect_soon()
    else:  # DLP on the arguments (scan_requests): before any decision
        scan = dlp_filter.for_policy(state.policy).scan_request(msg)
        if scan is not None:
            if scan.outcome is not None:
                tool = _tool(msg, method)
                _deny(
                    session, msg, method, scan.outcome, tool=tool, detail=scan.detail, dlp=scan.dlp
                )
                return
            msg, hits = scan.msg, scan.dlp  # redact mode: the redacted call is decided and sent
    try:
        decision = engine.decide(state.policy, msg.obj, state.limiter, state.context)
    except Exception:
        log.exception("policy engine failed; denying")
        _deny(session, msg, method, Outcome.INTERNAL_ERROR, tool=_tool(msg, method), dlp=hits)
        return
    _apply(session, msg, method, decision, hits)


def _apply(
    session: Session, msg: Message, method: str, d: Decision, hits: list[str] | None = None
) -> None:
    tool = d.tool if d.tool is not None else _tool(msg, method)
    if d.verdict is _FORWARD:
        if method == TOOLS_CALL:
            mw = d.monitor_would
            would = None if mw is None else mw.value if isinstance(mw, Outcome) else str(mw)
            session.record(
                _ALLOWED,
                tool=tool,
                arguments=_arguments(msg),
                request_id=msg.id,
                rule=d.rule.label if d.rule is not None else None,
                monitor_would=would,
                extra={"dlp": hits} if hits else None,
            )
        session.forward(msg, method, tool)
        return
    if d.verdict is Verdict.ASK and msg.kind is Kind.REQUEST and session.asks is not None:
        session.asks.start(msg, d, tool, dlp=hits)
        return
    if d.token_reserved and d.rule is not None:
        session.give_back(d.rule)
    outcome = d.outcome if d.outcome is not None else Outcome.NOT_ALLOWED
    detail = d.detail
    if d.verdict is Verdict.ASK:
        detail = "ask rule on a notification: no answer possible, dropped"
    _deny(session, msg, method, outcome, tool=tool, decision=d, detail=detail, dlp=hits)


def _deny(
    session: Session,
    msg: Message,
    method: str,
    outcome: Outcome,
    *,
    tool: str | None,
    decision: Decision | None = None,
    detail: str = "",
    dlp: list[str] | None = None,
) -> None:
    rule = decision.rule.label if decision is not None and decision.rule is not None else None
    fields: dict[str, Any] = {
        "tool": tool,
        "arguments": _arguments(msg) if method == TOOLS_CALL else None,
        "request_id": msg.id,
        "rule": rule,
        "detail": detail or None,
    }
    if dlp:
        fields["extra"] = {"dlp": dlp}
    if msg.kind is Kind.NOTIFICATION:
        log.warning("dropped notification %r: %s", msg.method, outcome.value)
        session.record(outcome, event="dropped_notification", **fields)
        return
    extra = dict(decision.data) if decision is not None else None
    session.record(outcome, **fields)  # recorded before the client hears of it
    session.reply_error(msg.id, outcome, tool=tool, detail=detail or None, extra=extra)


def _client_response(session: Session, msg: Message) -> None:
    """The client's answer to a server-initiated request (sampling, elicitation, roots,
    ping): forwarded only when it answers a request the server really sent."""
    method = session.take_server_request(msg.id)
    if method is None:
        log.warning("dropped client response to unknown server request id=%r", msg.id)
        return
    answer = dlp_filter.for_policy(session.state.policy).scan_answer(session, msg, method)
    if answer is None:
        return  # DLP: the server got an error for its request instead
    if method == ROOTS_LIST and session.on_client_roots is not None and "result" in answer.obj:
        # Before forwarding: the server resolves relative paths against these from now on.
        session.on_client_roots(answer.obj["result"])
    session.forward(answer, "", None)


def _duplicate(session: Session, msg: Message) -> bool:
    assert msg.id is not None
    asks = session.asks
    if session.is_in_flight(msg.id) or (asks is not None and asks.is_pending(msg.id)):
        # The one refusal answered with id null although the id is readable: an answer with
        # it would resolve the original call, which is still running (or waiting for a human).
        session.reject(RpcReject(Outcome.INVALID_REQUEST, None, "request id already in flight"))
        return True
    return False


def _cancel_ask(session: Session, msg: Message) -> bool:
    """A cancel for a pending ask withdraws the ask; the server never saw that request, so the
    cancel is not forwarded."""
    params = msg.obj.get("params")
    request_id = params.get("requestId") if isinstance(params, dict) else None
    asks = session.asks
    if asks is None or not valid_id(request_id) or not asks.is_pending(request_id):
        return False
    asks.cancel(request_id)
    return True


def _client_name(msg: Message, method: str) -> object:
    params = msg.obj.get("params")
    if not isinstance(params, dict):
        return None
    if method == DISCOVER:
        meta = params.get("_meta")
        info = meta.get(CLIENT_INFO_META) if isinstance(meta, dict) else None
    else:
        info = params.get("clientInfo")
    return info.get("name") if isinstance(info, dict) else None


def _tool(msg: Message, method: str) -> str | None:
    if method != TOOLS_CALL:
        return None
    name = msg.obj["params"].get("name")
    return name if isinstance(name, str) else None


def _arguments(msg: Message) -> Any:
    params = msg.obj.get("params")
    return params.get("arguments", {}) if isinstance(params, dict) else None
