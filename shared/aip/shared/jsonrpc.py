"""Newline-delimited JSON-RPC 2.0 on the MCP stdio wire: strict parsing, error replies.

The one module for that wire. Lines are parsed strictly in both directions (DESIGN §4.3): one
object per line, no batches, the JSON rules of ``aip.shared.jsontext`` (no duplicate keys at
any depth, exact numbers), ids that are a short string or a safe integer. What is forwarded is
the line as the peer wrote it (``Message.wire``), unless the policy changed the message.
A refusal carries the message's own id whenever one can be read, even from a broken line.
"""

from __future__ import annotations

import enum
import json

import orjson

from aip.shared.jsonlong import LONG_LINE_BYTES, skeleton
from aip.shared.jsontext import TextError, decode, scan_id
from aip.shared.outcomes import Outcome, row
from aip.shared.slotclass import Slotted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, TypeGuard

MAX_LINE_BYTES: Final = 4 * 1024 * 1024  # agent -> proxy (security.md §4.10)
MAX_SERVER_LINE_BYTES: Final = 16 * 1024 * 1024  # server -> proxy
MAX_ID_CHARS: Final = 256
MAX_SAFE_INT: Final = 2**53 - 1
JSONRPC_VERSION: Final = "2.0"

RequestId = str | int


class Kind(enum.Enum):
    REQUEST = "request"  # method + id
    NOTIFICATION = "notification"  # method, no id
    RESPONSE = "response"  # id + result or error


class RpcReject(ValueError):
    """A line that cannot be accepted; answered with ``outcome`` and ``request_id``: the
    message's id as written (any size), or None when no string or integer id can be read."""

    def __init__(self, outcome: Outcome, request_id: RequestId | None, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.request_id = request_id
        self.detail = detail


class Message(Slotted):  # not frozen: built once per message, frozen __init__ costs more
    """A checked message and the exact bytes that would be forwarded (no newline)."""

    __slots__ = ("id", "kind", "method", "obj", "partial", "wire")
    obj: dict[str, Any]
    wire: bytes
    kind: Kind
    method: str | None  # raw, as sent
    id: RequestId | None
    # A long response checked by its skeleton (aip.shared.jsonlong): ``obj`` is the envelope
    # with long string values emptied; whatever needs the content decodes ``wire`` itself.
    partial: bool

    def __init__(
        self,
        obj: dict[str, Any],
        wire: bytes,
        kind: Kind,
        method: str | None,
        id: RequestId | None,
        partial: bool = False,
    ) -> None:
        self.obj = obj
        self.wire = wire
        self.kind = kind
        self.method = method
        self.id = id
        self.partial = partial


def valid_id(value: object) -> TypeGuard[RequestId]:
    """A string of at most 256 chars or an int within +-(2^53-1); bools are not ints."""
    if type(value) is str:
        return len(value) <= MAX_ID_CHARS
    if type(value) is int:
        return -MAX_SAFE_INT <= value <= MAX_SAFE_INT
    return False


def readable_id(obj: object, text: bytes) -> RequestId | None:
    """The id to answer a refused message with: its string or integer ``id`` as decoded,
    else what a lenient scan of the raw text finds (an integer orjson read as a double
    included), else None."""
    if isinstance(obj, dict):
        value = obj.get("id")
        if type(value) in (str, int):
            return value
    return scan_id(text)


def audit_id(request_id: RequestId | None) -> RequestId | None:
    """The id as an audit record or a log line may hold it: an integer beyond 64 bits as its
    digits, a string over the id limit (a refused one, up to a line long) cut with a count."""
    if type(request_id) is int and not -(2**63) <= request_id < 2**64:
        return str(request_id)
    if type(request_id) is str and len(request_id) > MAX_ID_CHARS:
        cut = len(request_id) - MAX_ID_CHARS
        return f"{request_id[:MAX_ID_CHARS]}...[{cut} more chars]"
    return request_id


def parse_line(line: bytes, *, long_responses: bool = False) -> Message:
    """Parse and shape-check one line (either direction); raise ``RpcReject`` when refused.
    ``wire`` is the line itself, without its surrounding whitespace. ``long_responses``: a
    long response may come back ``partial`` (server lines only: the proxy decides nothing
    from a response's content without decoding it)."""
    text = line.strip()
    if long_responses and len(text) >= LONG_LINE_BYTES:
        msg = _long_response(text)
        if msg is not None:
            return msg
    try:
        obj = decode(text)
    except TextError as exc:
        outcome = Outcome.PARSE_ERROR if exc.parse else Outcome.INVALID_REQUEST
        raise RpcReject(outcome, scan_id(text), exc.detail) from None
    if type(obj) is not dict:
        what = "batch (JSON array) not supported" if type(obj) is list else "not a JSON object"
        raise RpcReject(Outcome.INVALID_REQUEST, None, what)
    # Per message on both relay threads: the checks of valid_id inline, the enum members
    # read from module globals (an Enum class attribute costs a metaclass lookup each time).
    req_id = obj.get("id", _ABSENT)
    has_id = req_id is not _ABSENT
    if not has_id:
        req_id = None
    elif type(req_id) is int:
        if not -MAX_SAFE_INT <= req_id <= MAX_SAFE_INT:
            raise RpcReject(_INVALID, readable_id(obj, text), _BAD_ID)
    elif type(req_id) is not str or len(req_id) > MAX_ID_CHARS:
        raise RpcReject(_INVALID, readable_id(obj, text), _BAD_ID)
    if obj.get("jsonrpc") != JSONRPC_VERSION:
        raise RpcReject(_INVALID, req_id, 'jsonrpc must be "2.0"')
    method = obj.get("method", _ABSENT)
    if method is not _ABSENT:
        if type(method) is not str:
            raise RpcReject(_INVALID, req_id, "method must be a string")
        if "params" in obj and type(obj["params"]) is not dict:
            raise RpcReject(_INVALID, req_id, "params must be an object")
        return Message(obj, text, _REQUEST if has_id else _NOTIFICATION, method, req_id)
    if has_id and (("result" in obj) != ("error" in obj)):
        return Message(obj, text, _RESPONSE, None, req_id)
    raise RpcReject(_INVALID, req_id, "neither a request nor a response")


_ABSENT: Final = object()
_BAD_ID: Final = "id must be a string or a safe integer"
_INVALID: Final = Outcome.INVALID_REQUEST
_REQUEST: Final = Kind.REQUEST
_NOTIFICATION: Final = Kind.NOTIFICATION
_RESPONSE: Final = Kind.RESPONSE


def _long_response(text: bytes) -> Message | None:
    """The response ``text`` checked by its skeleton, or None: decode it whole instead (not
    a response, not worth it, or refused: the full decoder then says exactly why)."""
    skel = skeleton(text)
    if skel is None:
        return None
    try:
        obj = decode(skel)
    except TextError:
        return None
    if type(obj) is not dict or "method" in obj or obj.get("jsonrpc") != JSONRPC_VERSION:
        return None
    req_id = obj.get("id")
    # "" may be an emptied long id (an invalid one): only the full decoder can tell.
    if not valid_id(req_id) or req_id == "" or ("result" in obj) == ("error" in obj):
        return None
    return Message(obj, text, Kind.RESPONSE, None, req_id, partial=True)


def check_tool_call(msg: Message) -> None:
    """``tools/call`` needs object params with a string ``name`` and object ``arguments``."""
    params = msg.obj.get("params")
    if type(params) is not dict:
        raise RpcReject(Outcome.INVALID_REQUEST, msg.id, "tools/call params must be an object")
    if type(params.get("name")) is not str:
        raise RpcReject(Outcome.INVALID_REQUEST, msg.id, "tools/call needs a string name")
    if "arguments" in params and type(params["arguments"]) is not dict:
        raise RpcReject(Outcome.INVALID_REQUEST, msg.id, "tools/call arguments must be an object")


def error_line(
    request_id: RequestId | None,
    outcome: Outcome,
    *,
    tool: str | None = None,
    detail: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The JSON-RPC error reply for ``outcome`` (DESIGN §5), newline included."""
    r = row(outcome)
    data: dict[str, Any] = dict(extra) if extra else {}
    data["reason"] = outcome.value
    if tool is not None:
        data["tool"] = tool
    if request_id is not None:
        data["request_id"] = request_id
    if detail:
        data.setdefault("detail", detail)
    error = {"code": r.code, "message": r.message, "data": data}
    reply = {"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": error}
    try:
        return orjson.dumps(reply) + b"\n"
    except TypeError:  # an id beyond 64 bits, echoed as the client wrote it
        return json.dumps(reply, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def notification_line(method: str, params: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": JSONRPC_VERSION, "method": method, "params": params}) + b"\n"


def message_line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


class ServerLine(Slotted):  # not frozen: one per server line, a frozen __init__ costs 4x
    """What the server -> host relay knows of a checked server line."""

    __slots__ = ("id", "kind", "obj")
    kind: Kind
    id: RequestId | None
    obj: dict[str, Any] | None  # the parsed object

    def __init__(self, kind: Kind, id: RequestId | None, obj: dict[str, Any] | None) -> None:
        self.kind = kind
        self.id = id
        self.obj = obj
