"""``aipctl grants`` over the approver's socket: list, show and revoke remembered decisions.

Like ``status`` it needs no hello (it is no proxy session); the peer uid check is the gate, so
only the approver's own user can list or revoke. These messages are control-plane only: a
restricted socket (one with an allowlist of message types) must never admit them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from aip.shared.protocol.codec import PROTOCOL_VERSION, need
from aip.shared.protocol.messages import MsgType, check_nonce, check_session


class GrantsOp(enum.StrEnum):
    LIST = "list"  # every grant (``ids`` empty) or the ones named
    REVOKE = "revoke"  # the ones named, or by session / tool, or all


@dataclass(frozen=True, slots=True, kw_only=True)
class Grants:
    ref: str  # 32 hex chars, like a nonce; echoed in the reply
    op: GrantsOp
    ids: list[str] = field(default_factory=list)
    session: str = ""
    tool: str = ""  # normalized by the approver
    all: bool = False
    type: MsgType = MsgType.GRANTS
    v: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        check_nonce(self.ref)
        need(len(self.ids) <= 1024, "at most 1024 grant ids")
        if self.session:
            check_session(self.session)
        if self.op is GrantsOp.REVOKE:
            chosen = bool(self.ids) + bool(self.session) + bool(self.tool) + self.all
            need(chosen == 1, "revoke needs exactly one of ids, session, tool, all")


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantsReply:
    ref: str
    grants: list[dict[str, Any]]  # list: the grants; revoke: the ones revoked (as they were)
    missing: list[str] = field(default_factory=list)  # ids asked for that do not exist
    type: MsgType = MsgType.GRANTS_REPLY
    v: int = PROTOCOL_VERSION
