"""A proxy session's messages (DESIGN §6): hello, ask, cancel, audit, bye to the approver;
welcome, decision, audit_ack, error back. The approver owns the ask deadline (arrival +
timeout_s); the proxy's outer bound is send time + timeout_s + FALLBACK_GRACE_S.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat

from aip.shared.outcomes import Outcome
from aip.shared.protocol.codec import PROTOCOL_VERSION, need
from aip.shared.protocol.facts import GrantFacts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

DEFAULT_TIMEOUT_S: Final = 60.0  # the guide's auto-deny deadline
FALLBACK_GRACE_S: Final = 5.0  # the proxy's outer bound is send time + timeout_s + this
MAX_ASK_BYTES: Final = 256 * 1024  # an encoded ask above this is denied too_large_to_review
MAX_FRAME_BYTES: Final = 1024 * 1024  # approver ZMQ_MAXMSGSIZE: asks + margin, audit batches
MAX_AUDIT_RECORDS: Final = 64  # records per audit message
MAX_REQUEST_ID_CHARS: Final = 256
MAX_SAFE_INT: Final = 2**53 - 1
HEARTBEAT_S: Final = 3.0  # a ZeroMQ link silent this long is dead; a heartbeat every third
HEARTBEAT_ENV: Final = "AIP_HEARTBEAT_S"  # HEARTBEAT_S for both ends (a test's 0.5 s)
# The feature level in hello and welcome (the envelope's ``v`` stays 1). 2: hello carries the
# session key, refusals echo type and nonce. 3: an ask may carry ``grant`` facts and decisions
# may be ``granted`` / ``denied_by_grant`` (sent only to a proxy that said proto >= 3).
# 4, said in welcome only: the approver checks spool lines of either MAC
# (aip.shared.audit.spool_line), so the proxy may sign its spool with the faster one. A proxy
# still says PROXY_PROTO in its hello: it asks for nothing new, and an approver refuses a hello
# above its own PROTO (a new proxy keeps working with an approver of 3).
# An approver serves proxies of MIN_PROTO..PROTO.
PROTO: Final = 4
PROXY_PROTO: Final = 3
GRANT_PROTO: Final = 3
SPOOL_MAC2_PROTO: Final = 4
MIN_PROTO: Final = 2

_SESSION_RE: Final = re.compile(r"[0-9a-f]{16}")
_NONCE_RE: Final = re.compile(r"[0-9a-f]{32}")
_DIGEST_RE: Final = re.compile(r"[0-9a-f]{64}")


class MsgType(enum.StrEnum):
    HELLO = "hello"
    ASK = "ask"
    CANCEL = "cancel"
    AUDIT = "audit"
    BYE = "bye"
    WELCOME = "welcome"
    DECISION = "decision"
    AUDIT_ACK = "audit_ack"
    ERROR = "error"
    STATUS = "status"  # aipctl approver status -> approver
    STATUS_REPLY = "status_reply"
    GRANTS = "grants"  # aipctl grants list|show|revoke -> approver (protocol.grants)
    GRANTS_REPLY = "grants_reply"


class ErrorCode(enum.StrEnum):
    HELLO_REQUIRED = "hello_required"  # unknown session: send hello, then the message once more
    MALFORMED = "malformed"  # the approver could not decode a frame (logged on both sides)
    VERSION = "version"  # the hello's proto is outside what this approver serves
    SESSION_BOUND = "session_bound"  # the session id is bound to another key
    FORBIDDEN = "forbidden"  # not served to a remote peer (status, grants): only asks, records


# What an approver may answer to an ask. CANCELLED is never sent: the proxy withdrew the ask.
DECISION_OUTCOMES: Final = frozenset(
    {
        Outcome.HUMAN_APPROVED,
        Outcome.GRANTED,
        Outcome.DENIED_BY_USER,
        Outcome.DENIED_BY_GRANT,
        Outcome.TIMEOUT,
        Outcome.QUEUE_FULL,
        Outcome.ASK_RATE_LIMITED,
        Outcome.NO_DISPLAY,
        Outcome.DIALOG_ERROR,
        Outcome.SHUTDOWN,
        Outcome.AUDIT_UNAVAILABLE,
        Outcome.TOO_LARGE_TO_REVIEW,
    }
)


def check_session(session: str) -> None:
    need(_SESSION_RE.fullmatch(session) is not None, "session must be 16 lowercase hex chars")


def _check_request_id(request_id: str | int) -> None:
    if isinstance(request_id, str):
        need(len(request_id) <= MAX_REQUEST_ID_CHARS, "request_id too long")
    else:
        need(abs(request_id) <= MAX_SAFE_INT, "request_id out of range")


def check_nonce(nonce: str) -> None:
    need(_NONCE_RE.fullmatch(nonce) is not None, "nonce must be 32 lowercase hex chars")


def _check_digest(digest: str) -> None:
    need(_DIGEST_RE.fullmatch(digest) is not None, "digest must be 64 lowercase hex chars")


def _check_ref(session: str, request_id: str | int, nonce: str, digest: str | None = None) -> None:
    """What names one ask on the wire (ask, cancel, decision): checked the same everywhere."""
    check_session(session)
    _check_request_id(request_id)
    check_nonce(nonce)
    if digest is not None:
        _check_digest(digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRef:
    """The policy a proxy decides by: its name and the sha256 of its file."""

    name: str
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HumanDecision:
    """Present in a decision only when a dialog was shown (DESIGN §8)."""

    approved: bool
    response_time_ms: int  # dialog shown -> answer (or deadline)
    dialog_shown_at: str  # UTC RFC 3339 with ms


# ---- proxy -> approver ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """Introduces a proxy session; sent on every (re)connect and after ``hello_required``.
    A second hello for a known session updates it (e.g. the agent id once ``initialize``
    named the client), but only with the key of the first: ``key`` (32 random bytes, hex,
    made with the session) binds the session id to its proxy and authenticates its spool.
    The defaults are what a proxy from before ``proto`` sends (and is refused for)."""

    session: str
    pid: int
    agent_id: str
    server: str
    policy: PolicyRef
    proto: int = 1
    key: str = ""
    # The proxy's host name (socket.gethostname()). Only the SSH extra socket uses it: as the
    # device name the proxy *claims* (shown as claimed), never as proof of anything.
    host: str = ""
    type: MsgType = MsgType.HELLO
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        check_session(self.session)
        need(self.proto < 2 or _DIGEST_RE.fullmatch(self.key) is not None, "key: 64 hex chars")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ask:
    """A tools/call waiting for a human. ``arguments`` are display values, DLP-redacted."""

    session: str
    request_id: str | int
    nonce: str  # 128 random bits, hex: binds the decision to this ask
    digest: str  # sha256 hex of the exact bytes the proxy forwards on allow
    tool: str
    arguments: dict[str, Any]
    rule: str
    size: int  # length of the bytes to forward
    agent_id: str | None = None  # overrides the hello's agent id when known
    # DLP rules that fired on the arguments ("rule:count", dlp.redactor.summarize), for the
    # approver's record of the answered ask. Optional: an ask without it decodes as [].
    dlp: list[str] = dataclasses.field(default_factory=list)
    # Characters of the arguments the display redaction replaced with markers (dlp.hidden):
    # the dialog says how much its markers stand for. Optional: absent decodes as 0.
    hidden_chars: int = 0
    # What a grant binds (proto 3; absent: never granted, never remembered).
    grant: GrantFacts | None = None
    type: MsgType = MsgType.ASK
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _check_ref(self.session, self.request_id, self.nonce, self.digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    """Proxy -> approver: withdraw the ask ``request_id`` (the agent cancelled the call)."""

    session: str
    request_id: str | int
    nonce: str
    type: MsgType = MsgType.CANCEL
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _check_ref(self.session, self.request_id, self.nonce)


@dataclass(frozen=True, slots=True, kw_only=True)
class Audit:
    """Up to MAX_AUDIT_RECORDS audit records (plain JSON objects, each with ``session`` and
    ``rseq``) for the approver to append; answered by ``audit_ack`` with the same ``batch``."""

    session: str
    batch: int
    records: list[dict[str, Any]]
    type: MsgType = MsgType.AUDIT
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        check_session(self.session)
        need(0 < len(self.records) <= MAX_AUDIT_RECORDS, "audit needs 1..64 records")
        if not _all_of_session(self.records, self.session):
            for rec in self.records:  # the first record at fault names the error
                need(rec.get("session") == self.session, "audit record of another session")
                rseq = rec.get("rseq")
                need(type(rseq) is int and rseq >= 0, "audit record without a valid rseq")


def _all_of_session(records: list[dict[str, Any]], session: str) -> bool:
    """Does every record carry ``session`` and an int ``rseq`` >= 0? One pass in C per field
    (``map``) instead of Python code per record: the approver decodes up to 256 records per
    50 ms window (issue 16). False sends the caller to its per-record loop, which raises the
    error of the first record at fault."""
    try:
        rseqs: list[Any] = list(map(dict.get, records, repeat("rseq")))
        sessions: list[Any] = list(map(dict.get, records, repeat("session")))
    except TypeError:  # a record that is not an object
        return False
    return (
        sessions.count(session) == len(records)
        and list(map(type, rseqs)).count(int) == len(rseqs)  # int, not bool
        and min(rseqs) >= 0
    )


def audit_frame(session: str, batch: int, lines: list[bytes]) -> bytes:
    """The ``audit`` frame of records the proxy already serialized: each line one JSON object
    as orjson made it, ending in its newline (as the recorder and the spool hold it). Byte for
    byte ``encode(Audit(...))`` of those records, without parsing and serializing them again
    (tests/shared/test_protocol_audit_frame.py). The approver decodes it like any frame, so
    every record is checked there exactly as before; here only the envelope's own fields and
    the shape of each line are checked.

    The lines are joined as they are and their newlines become the commas between records:
    one copy of the batch in C, not a slice per record (issue 16: those slices were most of
    the approval thread's ~0.55 us per record here, with the GIL held). That is exact
    because a line holds no other newline byte (JSON text escapes it in strings, orjson
    writes no whitespace), which the count below checks."""
    check_session(session)
    need(type(batch) is int, "batch must be an integer")
    count = len(lines)
    need(0 < count <= MAX_AUDIT_RECORDS, "audit needs 1..64 records")
    joined = b"".join(lines)
    need(
        all(map(bytes.startswith, lines, repeat(b"{")))
        and all(map(bytes.endswith, lines, repeat(b"}\n")))
        and joined.count(b"\n") == count,
        "an audit record is one JSON object on one line",
    )
    return b'{"session":"%s","batch":%d,"records":[%s],"type":"audit","v":%d}' % (
        session.encode("ascii"),
        batch,
        joined[:-1].replace(b"\n", b","),
        PROTOCOL_VERSION,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye:
    """The proxy is going away: cancel its asks and forget the session."""

    session: str
    type: MsgType = MsgType.BYE
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        check_session(self.session)


# ---- approver -> proxy ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome:
    """Approver -> proxy: the hello is accepted; the approver's deadline, limits and log."""

    session: str
    timeout_s: float
    max_ask_bytes: int
    audit_path: str
    proto: int = 1  # the approver's PROTO
    type: MsgType = MsgType.WELCOME
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        check_session(self.session)
        need(self.timeout_s > 0 and self.max_ask_bytes > 0, "welcome limits must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Approver -> proxy: the answer to one ask, bound to its nonce and the bytes' digest."""

    session: str
    request_id: str | int
    nonce: str
    digest: str
    outcome: Outcome
    human_decision: HumanDecision | None = None
    queue_wait_ms: int = 0
    type: MsgType = MsgType.DECISION
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _check_ref(self.session, self.request_id, self.nonce, self.digest)
        need(self.outcome in DECISION_OUTCOMES, f"outcome {self.outcome} is not a decision")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditAck:
    """The records of ``batch`` whose ``rseq`` is listed are in the log (or already were)."""

    session: str
    batch: int
    rseqs: list[int]
    type: MsgType = MsgType.AUDIT_ACK
    v: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    """``about``/``ref`` name the message it answers: an ask's or cancel's nonce, an audit's
    batch. A ``malformed`` frame's type and nonce are echoed when they can be read, so the
    proxy denies that ask at once."""

    code: ErrorCode
    about: MsgType | None = None
    ref: str = ""
    detail: str = ""
    type: MsgType = MsgType.ERROR
    v: int = PROTOCOL_VERSION


def new_nonce() -> str:
    """128 random bits as hex."""
    return os.urandom(16).hex()  # secrets.token_hex, without importing secrets (random)


def heartbeat_ms(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(interval, timeout) in ms of a ZeroMQ link's heartbeats: ``$AIP_HEARTBEAT_S`` seconds
    of silence (0.01-3600), else HEARTBEAT_S; the interval is a third of it."""
    raw = (os.environ if environ is None else environ).get(HEARTBEAT_ENV, "")
    try:
        seconds = float(raw) if raw.strip() else HEARTBEAT_S
    except ValueError:
        seconds = HEARTBEAT_S
    if not 0.01 <= seconds <= 3600:  # and NaN: a link must be able to die
        seconds = HEARTBEAT_S
    timeout = round(seconds * 1000)
    return max(timeout // 3, 1), timeout
