"""What each side of the control plane accepts: the one table per direction that maps a
frame's ``type`` to its message class, and the strict decoders built on them.

Tables are compiled at their first use, not at import: a proxy decodes only its session's
replies (``decode_session_reply``), and loading and compiling the control plane's messages
(``aipctl approver status`` and ``grants``, grants.py and status.py) cost each proxy ~15 ms of
its approval thread and ~0.2 MB it never used (issue 16). tests/shared/test_protocol_codec.py
compiles every table, so a field shape the decoder does not know still fails in CI.
"""

from __future__ import annotations

import functools
import operator

from aip.shared.protocol.codec import decode, message_table
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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    from aip.shared.protocol.grants import Grants, GrantsReply
    from aip.shared.protocol.status import Status, StatusReply

    SessionReply = Welcome | Decision | AuditAck | Error
    ToApprover = Hello | Ask | Cancel | Audit | Bye | Status | Grants
    ToProxy = SessionReply | StatusReply | GrantsReply
    Message = ToApprover | ToProxy
    # Control-plane requests (``aipctl approver status``, ``aipctl grants``): only a peer of
    # the approver's own uid on its local socket may send them. A restricted or remote socket
    # (one that admits an allowlist of message types) must refuse these types, whatever else
    # it admits.
    LOCAL_ONLY: frozenset[type[Any]]

_SESSION_REPLIES: Final = (Welcome, Decision, AuditAck, Error)
_tables: dict[str, dict[str, type[Any]]] = {}
_LAZY: Final = frozenset({"SessionReply", "ToApprover", "ToProxy", "Message", "LOCAL_ONLY"})


def _classes(direction: str) -> tuple[type[Any], ...]:
    """The message classes one direction accepts (the control plane's loaded only here)."""
    if direction == "session_reply":
        return _SESSION_REPLIES
    from aip.shared.protocol.grants import Grants, GrantsReply
    from aip.shared.protocol.status import Status, StatusReply

    if direction == "to_approver":
        return (Hello, Ask, Cancel, Audit, Bye, Status, Grants)
    return (*_SESSION_REPLIES, StatusReply, GrantsReply)


def _table(direction: str) -> dict[str, type[Any]]:
    table = _tables.get(direction)
    if table is None:
        table = _tables[direction] = message_table(_classes(direction))  # a race: the same
    return table


def decode_to_approver(frame: bytes) -> ToApprover:
    return decode(frame, _table("to_approver"))  # type: ignore[no-any-return]


def decode_to_proxy(frame: bytes) -> ToProxy:
    """Whatever the approver answers, control-plane replies included (aipctl's clients)."""
    return decode(frame, _table("to_proxy"))  # type: ignore[no-any-return]


def decode_session_reply(frame: bytes) -> SessionReply:
    """What an approver sends a proxy session; anything else is a ``ProtocolError``."""
    return decode(frame, _table("session_reply"))  # type: ignore[no-any-return]


def __getattr__(name: str) -> Any:
    """The message unions and LOCAL_ONLY, for code that uses them at run time (the approver):
    made when first asked for, so they load the control plane's modules then, not here
    (``from frames import x`` asks for ``__path__`` too: that is no reason to load them)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from aip.shared.protocol.grants import Grants
    from aip.shared.protocol.status import Status

    unions = {
        union: functools.reduce(operator.or_, _classes(direction))
        for union, direction in (
            ("SessionReply", "session_reply"),
            ("ToApprover", "to_approver"),
            ("ToProxy", "to_proxy"),
        )
    }
    values = {
        **unions,
        "Message": unions["ToApprover"] | unions["ToProxy"],
        "LOCAL_ONLY": frozenset({Status, Grants}),
    }
    globals().update(values)
    return values[name]
