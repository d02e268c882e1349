"""Wire schema of the proxy <-> approver control plane (DESIGN §6); nothing else parses it.

One ZeroMQ frame per message (DEALER -> ROUTER), an orjson object with ``v`` (PROTOCOL_VERSION)
and ``type``. Decoding is strict: unknown fields, wrong types and other versions raise
``ProtocolError``, never anything else. The approver owns the ask deadline (arrival + timeout_s).
"""

from __future__ import annotations

import dataclasses
import enum
import re
import secrets
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Union

import orjson

from aip.shared.errors import AipError
from aip.shared.outcomes import Outcome

PROTOCOL_VERSION: Final = 1
DEFAULT_TIMEOUT_S: Final = 60.0  # the guide's auto-deny deadline
FALLBACK_GRACE_S: Final = 5.0  # the proxy's outer bound is send time + timeout_s + this
MAX_ASK_BYTES: Final = 256 * 1024  # an encoded ask above this is denied too_large_to_review
MAX_FRAME_BYTES: Final = 1024 * 1024  # approver ZMQ_MAXMSGSIZE: asks + margin, audit batches
MAX_AUDIT_RECORDS: Final = 64  # records per audit message
MAX_REQUEST_ID_CHARS: Final = 256
MAX_SAFE_INT: Final = 2**53 - 1

_SESSION_RE: Final = re.compile(r"[0-9a-f]{16}")
_NONCE_RE: Final = re.compile(r"[0-9a-f]{32}")
_DIGEST_RE: Final = re.compile(r"[0-9a-f]{64}")


class ProtocolError(ValueError, AipError):
    """A frame that is not a valid message of this protocol version."""


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


class ErrorCode(enum.StrEnum):
    HELLO_REQUIRED = "hello_required"  # unknown session: send hello, then the message once more
    MALFORMED = "malformed"  # the approver could not decode a frame (logged on both sides)


# What an approver may answer to an ask. CANCELLED is never sent: the proxy withdrew the ask.
DECISION_OUTCOMES: Final = frozenset(
    {
        Outcome.HUMAN_APPROVED,
        Outcome.DENIED_BY_USER,
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


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise ProtocolError(what)


def _check_session(session: str) -> None:
    _need(_SESSION_RE.fullmatch(session) is not None, "session must be 16 lowercase hex chars")


def _check_request_id(request_id: str | int) -> None:
    if isinstance(request_id, str):
        _need(len(request_id) <= MAX_REQUEST_ID_CHARS, "request_id too long")
    else:
        _need(abs(request_id) <= MAX_SAFE_INT, "request_id out of range")


def _check_nonce(nonce: str) -> None:
    _need(_NONCE_RE.fullmatch(nonce) is not None, "nonce must be 32 lowercase hex chars")


def _check_digest(digest: str) -> None:
    _need(_DIGEST_RE.fullmatch(digest) is not None, "digest must be 64 lowercase hex chars")


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRef:
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
    named the client)."""

    session: str
    pid: int
    agent_id: str
    server: str
    policy: PolicyRef
    type: MsgType = MsgType.HELLO
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _check_session(self.session)


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
    type: MsgType = MsgType.ASK
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _check_session(self.session)
        _check_request_id(self.request_id)
        _check_nonce(self.nonce)
        _check_digest(self.digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    session: str
    request_id: str | int
    nonce: str
    type: MsgType = MsgType.CANCEL
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _check_session(self.session)
        _check_request_id(self.request_id)
        _check_nonce(self.nonce)


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
        _check_session(self.session)
        _need(0 < len(self.records) <= MAX_AUDIT_RECORDS, "audit needs 1..64 records")
        for rec in self.records:
            _need(rec.get("session") == self.session, "audit record of another session")
            rseq = rec.get("rseq")
            _need(type(rseq) is int and rseq >= 0, "audit record without a valid rseq")


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye:
    """The proxy is going away: cancel its asks and forget the session."""

    session: str
    type: MsgType = MsgType.BYE
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _check_session(self.session)


# ---- approver -> proxy ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome:
    session: str
    timeout_s: float
    max_ask_bytes: int
    audit_path: str
    type: MsgType = MsgType.WELCOME
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _check_session(self.session)
        _need(self.timeout_s > 0 and self.max_ask_bytes > 0, "welcome limits must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
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
        _check_session(self.session)
        _check_request_id(self.request_id)
        _check_nonce(self.nonce)
        _check_digest(self.digest)
        _need(self.outcome in DECISION_OUTCOMES, f"outcome {self.outcome} is not a decision")


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
    """``ref`` names the message it answers: an ask's or cancel's nonce, an audit's batch."""

    code: ErrorCode
    about: MsgType | None = None
    ref: str = ""
    detail: str = ""
    type: MsgType = MsgType.ERROR
    v: int = PROTOCOL_VERSION


# ---- aipctl <-> approver: ``aipctl approver status`` ---------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """What the approver is doing. Needs no hello (it is no proxy session); the peer uid
    check is the gate, as for every message. Answered by ``status_reply`` with the same ref."""

    ref: str  # 32 hex chars, like a nonce
    type: MsgType = MsgType.STATUS
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _check_nonce(self.ref)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyStatus:
    """One connected proxy session, as its hello said; ``pending``: its asks not yet ended."""

    session: str
    pid: int
    agent_id: str
    server: str
    policy: PolicyRef
    pending: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogStatus:
    """The ask on screen. Display values come DLP-redacted, as the dialog shows them."""

    session: str
    request_id: str | int
    agent_id: str
    server: str
    tool: str
    rule: str
    shown_at: str  # UTC RFC 3339 with ms
    seconds_left: float  # until the deadline closes it


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReply:
    ref: str
    pid: int
    backend: str  # the dialog backend's name; "" when asks are denied at once
    unavailable: str  # then: the outcome every ask gets, and why
    timeout_s: float
    queued: int  # waiting for the dialog slot
    pending: int  # admitted and not ended (queued + on screen)
    max_pending: int
    max_pending_session: int
    proxies: list[ProxyStatus]
    dialog: DialogStatus | None
    audit_path: str
    audit_available: bool
    audit_seq: int | None  # the last record's seq (None: not known)
    type: MsgType = MsgType.STATUS_REPLY
    v: int = PROTOCOL_VERSION


ToApprover = Hello | Ask | Cancel | Audit | Bye | Status
ToProxy = Welcome | Decision | AuditAck | Error | StatusReply
Message = ToApprover | ToProxy


def encode(msg: Message) -> bytes:
    """One frame. orjson serialises dataclasses (nested too) and StrEnums natively."""
    return orjson.dumps(msg)


def decode_to_approver(frame: bytes) -> ToApprover:
    msg = _decode(frame, _TO_APPROVER)
    assert isinstance(msg, Hello | Ask | Cancel | Audit | Bye | Status)
    return msg


def decode_to_proxy(frame: bytes) -> ToProxy:
    msg = _decode(frame, _TO_PROXY)
    assert isinstance(msg, Welcome | Decision | AuditAck | Error | StatusReply)
    return msg


# ---- strict decoding --------------------------------------------------------------------

_Check = Callable[[Any], Any]  # returns the converted value or raises ProtocolError


def _decode(frame: bytes, classes: dict[str, type[Any]]) -> Any:
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    _need(isinstance(data, dict), "a message is a JSON object")
    v = data.get("v")
    _need(type(v) is int and v == PROTOCOL_VERSION, f"unsupported protocol version {v!r}")
    kind = data.get("type")
    cls = classes.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unexpected message type {kind!r}")
    return _build(cls, data)


def _build(cls: type[Any], data: dict[str, Any]) -> Any:
    checks = _CHECKS[cls]
    unknown = data.keys() - checks.keys()
    _need(not unknown, f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, check in checks.items():
        if name in data:
            try:
                kwargs[name] = check(data[name])
            except ProtocolError as exc:
                raise ProtocolError(f"{cls.__name__}.{name}: {exc}") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ProtocolError(f"{cls.__name__}: {exc}") from None


def _checker(tp: Any) -> _Check:
    """A strict checker for one annotation (only the shapes this module uses)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [_checker(arg) for arg in typing.get_args(tp)]
        return lambda value: _first_fit(options, value)
    if tp is type(None):
        return lambda value: _expect(value is None, "null", value)
    if tp is bool:
        return lambda value: _expect(type(value) is bool, "a boolean", value)
    if tp is int:
        return lambda value: _expect(type(value) is int, "an integer", value)
    if tp is float:
        return lambda value: float(_expect(type(value) in (int, float), "a number", value))
    if tp is str:
        return lambda value: _expect(type(value) is str, "a string", value)
    if isinstance(tp, type) and issubclass(tp, enum.StrEnum):
        enum_type = tp
        return lambda value: _enum(enum_type, value)
    if origin is dict:
        return lambda value: _expect(isinstance(value, dict), "an object", value)
    if origin is list:
        item = _checker(typing.get_args(tp)[0])
        return lambda value: [item(x) for x in _expect(isinstance(value, list), "a list", value)]
    if tp is Any:
        return lambda value: value
    if dataclasses.is_dataclass(tp):
        sub = typing.cast(type[Any], tp)
        return lambda value: _build(sub, _expect(isinstance(value, dict), "an object", value))
    raise TypeError(f"no protocol checker for {tp!r}")


def _expect(ok: bool, what: str, value: Any) -> Any:
    _need(ok, f"expected {what}, got {type(value).__name__}")
    return value


def _enum(enum_type: type[enum.StrEnum], value: Any) -> Any:
    _expect(type(value) is str, "a string", value)
    try:
        return enum_type(value)
    except ValueError:
        raise ProtocolError(f"unknown value {value!r}") from None


def _first_fit(options: list[_Check], value: Any) -> Any:
    errors = []
    for check in options:
        try:
            return check(value)
        except ProtocolError as exc:
            errors.append(str(exc))
    raise ProtocolError(" or ".join(errors))


def _kind(cls: type[Any]) -> str:
    """A message class's ``type`` (the default of its ``type`` field)."""
    return str(next(f.default for f in dataclasses.fields(cls) if f.name == "type"))


def _checks_for(cls: type[Any]) -> dict[str, _Check]:
    hints = typing.get_type_hints(cls)
    return {f.name: _checker(hints[f.name]) for f in dataclasses.fields(cls)}


_TO_APPROVER: Final = {_kind(c): c for c in (Hello, Ask, Cancel, Audit, Bye, Status)}
_TO_PROXY: Final = {_kind(c): c for c in (Welcome, Decision, AuditAck, Error, StatusReply)}
_PARTS: Final = (PolicyRef, HumanDecision, ProxyStatus, DialogStatus)
_CHECKS: Final[dict[type[Any], dict[str, _Check]]] = {
    cls: _checks_for(cls) for cls in (*_PARTS, *_TO_APPROVER.values(), *_TO_PROXY.values())
}


def new_nonce() -> str:
    """128 random bits as hex."""
    return secrets.token_hex(16)
