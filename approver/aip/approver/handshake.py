"""What the approver answers a hello it will not take, and a frame it cannot decode.

A hello is refused when its ``proto`` is outside MIN_PROTO..PROTO (``version``: the detail
says which side to upgrade) or when its session id is bound to another key (``session_bound``:
another process of our user, which read the id from ``status``, cannot take the session
over). A frame that does not decode is answered ``malformed`` with its ``type`` and ``nonce``
(an audit's ``batch``) echoed when they can be read, so the proxy denies that ask at once
instead of waiting for its fallback deadline (DESIGN §6).
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from aip.approver.session_keys import SessionKeys
from aip.shared.protocol.codec import ProtocolError
from aip.shared.protocol.messages import MIN_PROTO, PROTO, Error, ErrorCode, Hello, MsgType

_NONCE: Final = re.compile(r"[0-9a-f]{32}")
_KINDS: Final = frozenset(m.value for m in MsgType)
DETAIL_CHARS: Final = 200


def hello_refusal(msg: Hello, keys: SessionKeys) -> Error | None:
    """None when the hello may open (or refresh) its session."""
    if msg.proto > PROTO:
        detail = f"proxy speaks proto {msg.proto}, this approver {PROTO}: upgrade the approver"
        return Error(code=ErrorCode.VERSION, about=MsgType.HELLO, detail=detail)
    if msg.proto < MIN_PROTO:
        detail = f"proxy speaks proto {msg.proto}, approver needs {MIN_PROTO}+: upgrade the proxy"
        return Error(code=ErrorCode.VERSION, about=MsgType.HELLO, detail=detail)
    if not keys.bind(msg.session, msg.key):
        detail = "this session id belongs to another proxy"
        return Error(code=ErrorCode.SESSION_BOUND, about=MsgType.HELLO, detail=detail)
    return None


def malformed_reply(frame: bytes, exc: ProtocolError) -> Error:
    """``malformed``, naming the message when its type (and nonce or batch) can be read; a
    hello from a newer proxy (a field we do not know) gets the clear ``version`` refusal."""
    data = _loose(frame)
    kind = data.get("type")
    about = MsgType(kind) if isinstance(kind, str) and kind in _KINDS else None
    proto = data.get("proto")
    if about is MsgType.HELLO and type(proto) is int and proto > PROTO:
        detail = f"proxy speaks proto {proto}, this approver {PROTO}: upgrade the approver"
        return Error(code=ErrorCode.VERSION, about=about, detail=detail)
    nonce, batch = data.get("nonce"), data.get("batch")
    ref = ""
    if isinstance(nonce, str) and _NONCE.fullmatch(nonce):
        ref = nonce
    elif about is MsgType.AUDIT and type(batch) is int:
        ref = str(batch)
    return Error(code=ErrorCode.MALFORMED, about=about, ref=ref, detail=str(exc)[:DETAIL_CHARS])


def _loose(frame: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}
