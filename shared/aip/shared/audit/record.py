"""THE audit record (DESIGN §8): building records, capping long values, serializing a line.

A line is orjson output with every byte outside 0x20-0x7E rewritten as ``\\uXXXX`` (printable
ASCII only: ``tail -f`` cannot be spoofed, jq still reads the real values). ``seq`` and ``prev``
are set by the single writer (aip.approver.audit.writer), never here.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from aip.shared.audit.stamp import rfc3339
from aip.shared.outcomes import Outcome, audit_decision, row

FORMAT_VERSION: Final = 1
MONITOR_REASON: Final = "monitor"  # DESIGN §5: monitor mode records reason "monitor"
# Strings longer than this are capped: head + marker (length, HMAC of the full value) + tail.
CAP_CHARS: Final = 2048
CAP_KEEP_CHARS: Final = 512
# Arguments whose capped serialization is still larger than this are replaced as a whole.
MAX_ARGUMENTS_BYTES: Final = 16384
HMAC_KEY_BYTES: Final = 32


class Event(enum.StrEnum):
    DECISION = "decision"
    NOT_FORWARDED = "not_forwarded"
    DROPPED_NOTIFICATION = "dropped_notification"
    POLICY_RELOAD = "policy_reload"
    ROTATE = "rotate"
    GENESIS = "genesis"
    RECOVERED_TAIL = "recovered_tail"


@dataclass(frozen=True, slots=True)
class HumanDecision:
    """What the dialog said; only for asks where a dialog was actually shown."""

    approved: bool
    shown_at: float  # wall clock (time.time()) when the dialog appeared
    decided_at: float  # wall clock of the click (or the deadline)

    def as_dict(self) -> dict[str, Any]:
        return {
            "approved": self.approved,
            "response_time_ms": max(0, round((self.decided_at - self.shown_at) * 1000)),
            "dialog_shown_at": rfc3339(self.shown_at),
        }


def decision_record(
    *,
    outcome: Outcome,
    session: str,
    agent_id: str,
    user: str | None = None,
    server: str | None = None,
    pid: int | None = None,
    tool: str | None = None,
    arguments: Any = None,
    method: str | None = None,
    request_id: str | int | None = None,
    policy: dict[str, str] | None = None,
    rule: str | None = None,
    mode: str = "enforce",
    dlp: list[str] | None = None,
    rseq: int | None = None,
    timestamp: float | None = None,
    human: HumanDecision | None = None,
    queue_wait_ms: int | None = None,
    monitor_would: str | None = None,
    detail: str | None = None,
    event: Event = Event.DECISION,
) -> dict[str, Any]:
    """A decision (or dropped_notification) record with the guide's fields first.

    ``tool``/``arguments`` are None for anything but tools/call. ``monitor_would`` set means
    the call was forwarded in monitor mode and enforce mode would have done that instead.
    ``user`` None: the approver fills in the peer's user name before writing.
    """
    r = row(outcome)
    monitored = monitor_would is not None
    record: dict[str, Any] = {
        "timestamp": rfc3339(timestamp),
        "agent_id": agent_id,
        "user": user,
        "tool": tool,
        "arguments": arguments if tool is not None else None,
        "decision": "allow" if monitored else audit_decision(outcome),
        "reason": MONITOR_REASON if monitored else r.audit_reason,
    }
    if human is not None:
        record["human_decision"] = human.as_dict()
    record.update(
        {
            "event": event.value,
            "request_id": request_id,
            "session": session,
            "rseq": rseq,
            "server": server,
            "pid": pid,
            "policy": policy,
            "method": method,
            "rule": rule,
            "mode": mode,
            "outcome": outcome.value,
            "error_code": None if monitored else r.code,
            "dlp": list(dlp or ()),
            "queue_wait_ms": queue_wait_ms,
            "monitor": {"would": monitor_would} if monitored else None,
        }
    )
    if detail:
        record["detail"] = detail
    return record


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


def meta_record(event: Event, *, timestamp: float | None = None, **fields: Any) -> dict[str, Any]:
    """genesis / rotate / recovered_tail / policy_reload: ``event``, ``timestamp`` + fields."""
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
    return hmac.new(key, data, hashlib.sha256).hexdigest()


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


def load_or_create_key(path: Path) -> bytes:
    """The per-install HMAC key: 32 random bytes in a 0600 file of ours, made on first use.
    A key file that is not a regular file of ours with mode 0600 is refused (ValueError)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        try:
            os.write(fd, os.urandom(HMAC_KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise ValueError(f"{path}: HMAC key must be a 0600 regular file owned by us")
        key = os.read(fd, HMAC_KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != HMAC_KEY_BYTES:
        raise ValueError(f"{path}: HMAC key has {len(key)} bytes, expected {HMAC_KEY_BYTES}")
    return key
