"""``aipctl approver status`` over the approver's socket: the request and what it answers.

A status request needs no hello (it is no proxy session); the peer uid check is the gate, as
for every message.
"""

from __future__ import annotations

from dataclasses import dataclass

from aip.shared.protocol.codec import PROTOCOL_VERSION
from aip.shared.protocol.messages import MsgType, PolicyRef, check_nonce


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """What the approver is doing. Needs no hello (it is no proxy session); the peer uid
    check is the gate, as for every message. Answered by ``status_reply`` with the same ref."""

    ref: str  # 32 hex chars, like a nonce
    type: MsgType = MsgType.STATUS
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        check_nonce(self.ref)


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
