"""Server -> host pump. Lines are relayed as the raw bytes the server wrote; only their kind
and id are looked at (perf-limits.md: re-parsing 100 KB results costs more than the relay).

Exceptions: responses to our forwarded ``tools/list`` are filtered (DESIGN §4.7), responses to
ids nobody is waiting for and non-JSON junk are dropped. ``relay_server_line`` is the one
step every server line takes, so response redaction (DLP) goes there.
"""

from __future__ import annotations

import logging

import orjson

from aip.proxy.relay import dlp_filter
from aip.proxy.relay.session import Session
from aip.proxy.stdio import read_bursts
from aip.shared.jsonrpc import Kind, ServerLine, classify_server_line, message_line
from aip.shared.outcomes import Outcome
from aip.shared.policy import engine

log = logging.getLogger(__name__)


def pump(session: Session, fd: int, max_line_bytes: int) -> None:
    """Run until the server's stdout reaches EOF; each burst reaches the host in one write."""
    host = session.host
    for burst in read_bursts(fd, max_line_bytes):
        host.hold()
        try:
            for line in burst:
                if line is None:
                    log.warning("dropped a server line over %d bytes", max_line_bytes)
                    continue
                try:
                    relay_server_line(session, line)
                except Exception:  # task boundary: one bad line must not stop the relay
                    log.exception("internal error relaying a server line; dropped")
        finally:
            host.flush()
    log.info("MCP server closed its stdout")


def relay_server_line(session: Session, line: bytes) -> None:
    if not line.endswith(b"\n"):
        line += b"\n"
    info = classify_server_line(line)
    if info is None:
        if line.strip():
            log.warning(
                "dropped a server line that is not a JSON-RPC message (%d bytes)", len(line)
            )
        return
    if log.isEnabledFor(logging.DEBUG):
        log.debug("<- %s id=%r (%d bytes)", info.kind.value, info.id, len(line))
    obj, tool = info.obj, None
    if info.kind is Kind.RESPONSE:
        pending = session.take_pending(info.id)
        if pending is None:
            log.warning("dropped server response to unknown id=%r", info.id)
            return
        tool = pending.tool
        if pending.method == "tools/list":
            filtered = _filter_tools_list(session, line, info)
            if filtered is None:
                return
            if filtered is not line:
                line, obj = filtered, None
    elif info.kind is Kind.REQUEST:
        assert info.id is not None
        session.note_server_request(info.id)
    redacted = dlp_filter.for_policy(session.policy).relay_line(session, line, info, obj, tool)
    if redacted is not None:
        session.host.write(redacted)


def _filter_tools_list(session: Session, line: bytes, info: ServerLine) -> bytes | None:
    """The line with blocked tools removed (or the original bytes when nothing changes);
    None after answering with an error, when the filter itself failed (fail closed)."""
    try:
        obj = info.obj if info.obj is not None else orjson.loads(line)
        result = obj.get("result")
        if not isinstance(result, dict):
            return line  # an error response: nothing to filter
        filtered = engine.filter_tools_list(session.policy, result)
    except Exception:
        log.exception("tools/list filter failed; answering with an error")
        session.reply_error(info.id, Outcome.INTERNAL_ERROR)
        return None
    if filtered is None:
        return line
    return message_line({**obj, "result": filtered})
