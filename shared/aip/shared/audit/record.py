"""THE audit record (DESIGN §8): building records, capping long values, serializing a line.

A line is orjson output with every byte outside 0x20-0x7E rewritten as ``\\uXXXX`` (printable
ASCII only: ``tail -f`` cannot be spoofed, jq still reads the real values). ``seq`` and ``prev``
are set by the single writer (aip.approver.audit.writer), never here.
"""

from __future__ import annotations

import enum
import re

import orjson

from aip.shared.audit.stamp import rfc3339
from aip.shared.hashes import sha256
from aip.shared.outcomes import Outcome, audit_decision, row

TYPE_CHECKING = False
if TYPE_CHECKING:  # the protocol's messages load only with the approval client (start-up)
    from typing import Any, Final

    from aip.shared.protocol.messages import HumanDecision

FORMAT_VERSION: Final = 1
MONITOR_REASON: Final = "monitor"  # DESIGN §5: monitor mode records reason "monitor"
TOOLS_CALL: Final = "tools/call"  # the method of every record with a tool
# Strings longer than this are capped: head + marker (length, HMAC of the full value) + tail.
CAP_CHARS: Final = 2048
CAP_KEEP_CHARS: Final = 512
# Arguments whose capped serialization is still larger than this are replaced as a whole.
MAX_ARGUMENTS_BYTES: Final = 16384


class Event(enum.StrEnum):
    DECISION = "decision"
    NOT_FORWARDED = "not_forwarded"
    DROPPED_NOTIFICATION = "dropped_notification"
    POLICY_RELOAD = "policy_reload"
    ROTATE = "rotate"
    GENESIS = "genesis"
    RECOVERED_TAIL = "recovered_tail"
    REDACTION = "redaction"  # DLP acted on a server message or a client's answer (DESIGN §8)
    SPOOL_REJECTED = "spool_rejected"  # a spool line (or file) the approver did not ingest
    # Remembered decisions (docs/grants.md): written by the approver only.
    GRANT_CREATED = "grant_created"
    GRANT_EXPIRED = "grant_expired"
    GRANT_REVOKED = "grant_revoked"
    GRANT_REFUSED = "grant_refused"
    # A message a remote peer may not send (status, grants), refused (docs/remote.md).
    REMOTE_REFUSED = "remote_refused"


def decision_record(
    *,
    outcome: Outcome,
    session: str,
    agent_id: str,
    server: str | None = None,
    pid: int | None = None,
    policy: dict[str, str] | None = None,
    mode: str = "enforce",
    **fields: Any,
) -> dict[str, Any]:
    """A decision (or dropped_notification) record with the guide's fields first.

    ``fields`` are ``record_fields``' (tool, arguments, human, ...); the per-session ones
    come last, as ``DecisionTemplate`` appends them."""
    record = record_fields(outcome, agent_id=agent_id, **fields)
    record.update(_per_session(session, server, pid, policy, mode))
    return record


class DecisionTemplate:
    """``decision_record`` for a producer of many records of one session (the proxy's allow
    path): the per-session fields are serialized once, each record only adds its own."""

    __slots__ = ("_tail",)

    def __init__(
        self, *, session: str, server: str | None, pid: int, policy: dict[str, str], mode: str
    ) -> None:
        fields = orjson.dumps(_per_session(session, server, pid, policy, mode))
        self._tail = b"," + fields[1:] + b"\n"  # ',"session":...,"mode":...}\n'

    def line(self, fields: dict[str, Any]) -> bytes:
        """``fields`` (from ``record_fields``) plus the session's, as one orjson line with its
        newline: the bytes ``decision_record``'s dict would serialize to."""
        return orjson.dumps(fields)[:-1] + self._tail


# Per outcome: audit decision, audit reason, outcome value, error code (DESIGN §5), looked
# up once here instead of on every record.
_BY_OUTCOME: Final = {
    o: (audit_decision(o), row(o).audit_reason, o.value, row(o).code) for o in Outcome
}
_EVENT_VALUES: Final = {e: e.value for e in Event}  # Enum.value is a slow property


def record_fields(
    outcome: Outcome,
    *,
    agent_id: str,
    user: str | None = None,
    tool: str | None = None,
    arguments: Any = None,
    method: str | None = None,
    request_id: str | int | None = None,
    rule: str | None = None,
    dlp: list[str] | None = None,
    rseq: int | None = None,
    timestamp: float | None = None,
    human: HumanDecision | None = None,
    queue_wait_ms: int | None = None,
    monitor_would: str | None = None,
    detail: str | None = None,
    event: Event = Event.DECISION,
    grant_id: str | None = None,
) -> dict[str, Any]:
    """A decision record's own fields (all but the per-session ones), the guide's first.

    ``tool``/``arguments`` are None for anything but tools/call; ``method`` None with a
    ``tool`` means tools/call. ``monitor_would`` set means the call was forwarded in monitor
    mode and enforce mode would have done that instead. ``human`` only when a dialog was
    shown. ``user`` None: the approver fills in the peer's user name before writing.
    ``grant_id``: the grant that answered (``granted_by`` or ``denied_by_grant`` by outcome)."""
    decision, reason, value, code = _BY_OUTCOME[outcome]
    monitor = None
    if monitor_would is not None:
        decision, reason, code, monitor = "allow", MONITOR_REASON, None, {"would": monitor_would}
    if tool is None:
        arguments = None
    elif method is None:
        method = TOOLS_CALL
    record: dict[str, Any] = {
        "timestamp": rfc3339(timestamp),
        "agent_id": agent_id,
        "user": user,
        "tool": tool,
        "arguments": arguments,
        "decision": decision,
        "reason": reason,
        "event": _EVENT_VALUES[event],
        "request_id": request_id,
        "rseq": rseq,
        "method": method,
        "rule": rule,
        "outcome": value,
        "error_code": code,
        "dlp": list(dlp) if dlp else [],
        "queue_wait_ms": queue_wait_ms,
        "monitor": monitor,
    }
    if human is not None:  # only when a dialog was shown, right after the guide's reason
        items = list(record.items())
        shown = {
            "approved": human.approved,
            "response_time_ms": human.response_time_ms,
            "dialog_shown_at": human.dialog_shown_at,
        }
        record = dict([*items[:7], ("human_decision", shown), *items[7:]])
    if detail:
        record["detail"] = detail
    if grant_id is not None:
        record["granted_by" if outcome is Outcome.GRANTED else "denied_by_grant"] = grant_id
    return record


def _per_session(
    session: str, server: str | None, pid: int | None, policy: dict[str, str] | None, mode: str
) -> dict[str, Any]:
    return {"session": session, "server": server, "pid": pid, "policy": policy, "mode": mode}


def not_forwarded_record(
    *,
    session: str,
    request_id: str | int | None,
    why: str,
    agent_id: str,
    tool: str | None = None,
    server: str | None = None,
    pid: int | None = None,
    rseq: int | None = None,
    timestamp: float | None = None,
) -> dict[str, Any]:
    """An allowed ask the proxy then did not forward (late, cancelled, child gone). It has no
    ``decision`` so the guide's jq query keeps counting the approval once."""
    return {
        "timestamp": rfc3339(timestamp),
        "event": Event.NOT_FORWARDED.value,
        "agent_id": agent_id,
        "tool": tool,
        "request_id": request_id,
        "session": session,
        "rseq": rseq,
        "server": server,
        "pid": pid,
        "why": why,
    }


def grant_record(event: Event, *, timestamp: float | None = None, **fields: Any) -> dict[str, Any]:
    """grant_created / grant_expired / grant_revoked / grant_refused (schema.json names the
    fields of each): ``timestamp``, ``event``, then the grant's fields as given."""
    assert event.value.startswith("grant_"), event
    return {"timestamp": rfc3339(timestamp), "event": event.value, **fields}


def meta_record(event: Event, *, timestamp: float | None = None, **fields: Any) -> dict[str, Any]:
    """genesis / rotate / recovered_tail / policy_reload / remote_refused: ``event``,
    ``timestamp`` + fields."""
    return {"timestamp": rfc3339(timestamp), "event": event.value, **fields}


# --- serialization -------------------------------------------------------------------------

_NOT_PRINTABLE: Final = re.compile("[^\x20-\x7e]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # astral: a UTF-16 surrogate pair, as JSON requires
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def ascii_json(data: bytes) -> bytes:
    """Rewrite orjson output so every byte is printable ASCII. Outside string literals orjson
    only emits ASCII, and it already escapes 0x00-0x1F, so every rewritten character sits
    inside a string where ``\\uXXXX`` means the same value."""
    if data.isascii() and b"\x7f" not in data:
        return data
    return _NOT_PRINTABLE.sub(_escape_char, data.decode("utf-8")).encode("ascii")


def serialize(record: dict[str, Any]) -> bytes:
    """One audit line, without the newline (the chain hashes exactly these bytes)."""
    return ascii_json(orjson.dumps(record))


# --- capping -------------------------------------------------------------------------------


def _mac(key: bytes, data: bytes) -> str:
    import hmac  # only a capped value needs it: hmac imports hashlib (aip.shared.hashes)

    return hmac.new(key, data, sha256).hexdigest()


def cap_string(value: str, key: bytes) -> str:
    if len(value) <= CAP_CHARS:
        return value
    full = value.encode("utf-8", "surrogatepass")
    marker = f"...[capped: {len(value)} chars, hmac-sha256:{_mac(key, full)}]..."
    return value[:CAP_KEEP_CHARS] + marker + value[-CAP_KEEP_CHARS:]


def _cap(value: Any, key: bytes) -> Any:
    if isinstance(value, str):
        return cap_string(value, key)
    if isinstance(value, dict):
        return {cap_string(str(k), key): _cap(v, key) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_cap(v, key) for v in value]
    return value


def cap_record(record: dict[str, Any], key: bytes) -> dict[str, Any]:
    """Cap every long string (head + tail + HMAC of the full value under the install key);
    an ``arguments`` object still too large becomes ``{"aip_capped": {...}}``."""
    if len(orjson.dumps(record)) <= CAP_CHARS:
        return record  # no string inside can be longer than the whole line
    capped = {k: _cap(v, key) for k, v in record.items()}
    args = capped.get("arguments")
    if args is not None:
        blob = orjson.dumps(args)
        if len(blob) > MAX_ARGUMENTS_BYTES:
            text = blob.decode("utf-8")
            capped["arguments"] = {
                "aip_capped": {
                    "bytes": len(blob),
                    "hmac_sha256": _mac(key, orjson.dumps(record["arguments"])),
                    "head": text[:CAP_KEEP_CHARS],
                    "tail": text[-CAP_KEEP_CHARS:],
                }
            }
    return capped
