"""What each side of the control plane accepts: the one table per direction that maps a
frame's ``type`` to its message class, and the strict decoders built on them."""

from __future__ import annotations

from typing import Final

from aip.shared.protocol.codec import decode, message_table
from aip.shared.protocol.grants import Grants, GrantsReply
from aip.shared.protocol.messages import (
    Ask,
    Audit,
    AuditAck,
    Bye,
    Cancel,
    Decision,
    Error,
    Hello,
    Welcome,
)
from aip.shared.protocol.status import Status, StatusReply

ToApprover = Hello | Ask | Cancel | Audit | Bye | Status | Grants
ToProxy = Welcome | Decision | AuditAck | Error | StatusReply | GrantsReply
Message = ToApprover | ToProxy

_TO_APPROVER: Final = message_table((Hello, Ask, Cancel, Audit, Bye, Status, Grants))
_TO_PROXY: Final = message_table((Welcome, Decision, AuditAck, Error, StatusReply, GrantsReply))


# Control-plane requests (``aipctl approver status``, ``aipctl grants``): only a peer of the
# approver's own uid on its local socket may send them. A restricted or remote socket (one that
# admits an allowlist of message types) must refuse these types, whatever else it admits.
LOCAL_ONLY: Final = frozenset({Status, Grants})


def decode_to_approver(frame: bytes) -> ToApprover:
    msg = decode(frame, _TO_APPROVER)
    assert isinstance(msg, Hello | Ask | Cancel | Audit | Bye | Status | Grants)
    return msg


def decode_to_proxy(frame: bytes) -> ToProxy:
    msg = decode(frame, _TO_PROXY)
    assert isinstance(msg, Welcome | Decision | AuditAck | Error | StatusReply | GrantsReply)
    return msg
