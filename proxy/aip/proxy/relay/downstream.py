"""Server -> host pump. Every server line gets the client side's strictness
(aip.shared.jsonrpc.parse_line: no duplicate keys, one JSON-RPC message) and is relayed as the
bytes the server wrote.

Dropped, logged and recorded: a line that is not one well-formed message, and a response to an
id the proxy did not forward or that is no longer pending (a request still waiting for a human
was never sent: an answer to it is forged). Responses to our forwarded ``tools/list`` are
filtered (DESIGN §4.7). A line over the size limit answers its pending call with an error at
once. ``relay_server_line`` is the one step every server line takes, so response redaction
(DLP) goes there.
"""

from __future__ import annotations

import orjson

from aip.proxy.relay import dlp_filter
from aip.proxy.relay.session import Session
from aip.proxy.relay.tool_digests import note_tool_digests
from aip.proxy.stdio import Oversize, read_bursts
from aip.shared import logs
from aip.shared.jsonrpc import (
    Kind,
    RequestId,
    RpcReject,
    ServerLine,
    audit_id,
    message_line,
    parse_line,
)
from aip.shared.jsontext import scan_id
from aip.shared.outcomes import Outcome
from aip.shared.policy import engine
from aip.shared.policy.names import normalize

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

log = logs.get(__name__)
# Module globals: an Enum class attribute costs a metaclass lookup on every server line.
_RESPONSE: Final = Kind.RESPONSE
_REQUEST: Final = Kind.REQUEST


def pump(session: Session, fd: int, max_line_bytes: int) -> None:
    """Run until the server's stdout reaches EOF; each burst reaches the host in one write
    (a burst of one line is not held: it writes at most one line to the host)."""
    host = session.host
    for burst in read_bursts(fd, max_line_bytes):
        if len(burst) == 1:
            _relay_one(session, burst[0], max_line_bytes)
            continue
        host.hold()
        try:
            for line in burst:
                _relay_one(session, line, max_line_bytes)
        finally:
            host.flush()
    log.info("MCP server closed its stdout")


def _relay_one(session: Session, line: bytes | Oversize, max_line_bytes: int) -> None:
    try:
        if isinstance(line, Oversize):
            _oversize(session, line, max_line_bytes)
        else:
            relay_server_line(session, line, unfinished=not line.endswith(b"\n"))
    except Exception:  # task boundary: one bad line must not stop the relay
        log.exception("internal error relaying a server line; dropped")


def relay_server_line(session: Session, line: bytes, *, unfinished: bool = False) -> None:
    """``unfinished``: the bytes after the last newline at EOF (the server died mid-line)."""
    if not line.endswith(b"\n"):
        line += b"\n"
    try:
        msg = parse_line(line, long_responses=True)
    except RpcReject as exc:
        if unfinished:  # the server died mid-line: its calls get server_exited at the close
            drop(session, None, f"unfinished last line ({exc.detail})")
        elif line.strip():
            refuse(session, exc.request_id, exc.detail)
        return
    # A partial message's obj is only its envelope: never let content checks read it.
    obj: dict[str, Any] | None = None if msg.partial else msg.obj
    info = ServerLine(msg.kind, msg.id, obj)
    if log.isEnabledFor(logs.DEBUG):
        log.debug("<- %s id=%r (%d bytes)", info.kind.value, info.id, len(line))
    tool: str | None = None
    method: str | None = None
    if info.kind is _RESPONSE:
        pending = session.take_pending(info.id)
        if pending is None:
            drop(session, info.id, "response to an id that is not pending")
            return
        tool, method = pending.tool, pending.method
        if pending.method == "tools/list":
            filtered = _filter_tools_list(session, line, info)
            if filtered is None:
                return
            if filtered is not line:
                line, obj = filtered, None
    elif info.kind is _REQUEST:
        assert info.id is not None
        if obj is None:  # the fast path did not parse it; server requests are rare
            obj = orjson.loads(line)
        raw = obj.get("method") if isinstance(obj, dict) else None
        method = raw if type(raw) is str else None
        session.note_server_request(info.id, normalize(method) if method is not None else "")
    dlp = dlp_filter.for_policy(session.state.policy)
    redacted = dlp.relay_line(session, line, info, obj, tool, method=method)
    if redacted is not None:
        session.host.write(redacted)


def drop(session: Session, request_id: RequestId | None, why: str) -> None:
    """A server message the client must not see: logged and recorded, never relayed."""
    shown = audit_id(request_id)
    log.warning("dropped a server message (id=%r): %s", shown, why)
    session.record(
        Outcome.INVALID_REQUEST, request_id=shown, detail=f"server message dropped: {why}"
    )


def refuse(session: Session, request_id: RequestId | None, why: str) -> None:
    """A server line that cannot be relayed. When the id it shows (read leniently) is a call
    the client waits for, that call gets an error at once instead of hanging; otherwise the
    line is dropped. (A malformed server request that happens to show a pending id fails that
    call: no more than the server could do with an error response of its own.)"""
    pending = session.take_pending(request_id)
    if pending is None:
        drop(session, request_id, why)
        return
    assert request_id is not None
    detail = f"server response refused: {why}"
    log.warning("answering id=%r with an error: %s", request_id, detail)
    session.record(Outcome.INTERNAL_ERROR, tool=pending.tool, request_id=request_id, detail=detail)
    session.reply_error(request_id, Outcome.INTERNAL_ERROR, tool=pending.tool, detail=detail)


def _oversize(session: Session, line: Oversize, max_line_bytes: int) -> None:
    """A line over the limit cannot be relayed; the call it answers learns so at once."""
    why = (
        f"server message over {max_line_bytes} bytes "
        "(raise --max-server-line-bytes or $AIP_MAX_SERVER_LINE_BYTES)"
    )
    refuse(session, scan_id(line.head), why)


def _filter_tools_list(session: Session, line: bytes, info: ServerLine) -> bytes | None:
    """The line with blocked tools removed (or the original bytes when nothing changes);
    None after answering with an error, when the filter itself failed (fail closed)."""
    try:
        obj = info.obj if info.obj is not None else orjson.loads(line)
        result = obj.get("result")
        if not isinstance(result, dict):
            return line  # an error response: nothing to filter
        note_tool_digests(session, result)
        filtered = engine.filter_tools_list(session.policy, result)
    except Exception:
        log.exception("tools/list filter failed; answering with an error")
        session.reply_error(info.id, Outcome.INTERNAL_ERROR)
        return None
    if filtered is None:
        return line
    return message_line({**obj, "result": filtered})
