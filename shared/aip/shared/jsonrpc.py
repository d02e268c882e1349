"""Newline-delimited JSON-RPC 2.0 on the MCP stdio wire: strict parsing, error replies.

The one module for that wire. Client lines are parsed strictly (DESIGN §4.3): one object per
line, no batches, no duplicate keys at any depth, ids that are a short string or a safe integer.
What is forwarded is ``orjson.dumps`` of the checked object, never the raw line.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

import orjson

from aip.shared.outcomes import Outcome, row

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
    """A line that cannot be accepted; answered with ``outcome`` (id null when unknown)."""

    def __init__(self, outcome: Outcome, request_id: RequestId | None, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.request_id = request_id
        self.detail = detail


@dataclass(slots=True)  # not frozen: built once per message, frozen __init__ costs more
class Message:
    """A checked client message and the exact bytes that would be forwarded (no newline)."""

    obj: dict[str, Any]
    wire: bytes
    kind: Kind
    method: str | None  # raw, as sent
    id: RequestId | None


def valid_id(value: object) -> TypeGuard[RequestId]:
    """A string of at most 256 chars or an int within +-(2^53-1); bools are not ints."""
    if type(value) is str:
        return len(value) <= MAX_ID_CHARS
    if type(value) is int:
        return -MAX_SAFE_INT <= value <= MAX_SAFE_INT
    return False


def parse_client_line(line: bytes) -> Message:
    """Parse and shape-check one line from the agent; raise ``RpcReject`` when it is refused."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise RpcReject(Outcome.PARSE_ERROR, None, "invalid JSON") from None
    if type(obj) is not dict:
        what = "batch (JSON array) not supported" if type(obj) is list else "not a JSON object"
        raise RpcReject(Outcome.INVALID_REQUEST, None, what)
    has_id = "id" in obj
    req_id = obj.get("id")
    if has_id and not valid_id(req_id):
        raise RpcReject(Outcome.INVALID_REQUEST, None, "id must be a string or a safe integer")
    wire = orjson.dumps(obj)
    # orjson keeps the last of duplicate keys. When the compact re-serialization equals the
    # line there can be none (what MCP SDKs send); otherwise run the slower strict parse.
    if wire != line.strip() and _has_duplicate_keys(line):
        raise RpcReject(Outcome.INVALID_REQUEST, req_id, "duplicate key in object")
    if obj.get("jsonrpc") != JSONRPC_VERSION:
        raise RpcReject(Outcome.INVALID_REQUEST, req_id, 'jsonrpc must be "2.0"')
    if "method" in obj:
        method = obj["method"]
        if type(method) is not str:
            raise RpcReject(Outcome.INVALID_REQUEST, req_id, "method must be a string")
        if "params" in obj and type(obj["params"]) is not dict:
            raise RpcReject(Outcome.INVALID_REQUEST, req_id, "params must be an object")
        kind = Kind.REQUEST if has_id else Kind.NOTIFICATION
        return Message(obj, wire, kind, method, req_id)
    if has_id and (("result" in obj) != ("error" in obj)):
        return Message(obj, wire, Kind.RESPONSE, None, req_id)
    raise RpcReject(Outcome.INVALID_REQUEST, req_id, "neither a request nor a response")


def check_tool_call(msg: Message) -> None:
    """``tools/call`` needs object params with a string ``name`` and object ``arguments``."""
    params = msg.obj.get("params")
    if type(params) is not dict:
        raise RpcReject(Outcome.INVALID_REQUEST, msg.id, "tools/call params must be an object")
    if type(params.get("name")) is not str:
        raise RpcReject(Outcome.INVALID_REQUEST, msg.id, "tools/call needs a string name")
    if "arguments" in params and type(params["arguments"]) is not dict:
        raise RpcReject(Outcome.INVALID_REQUEST, msg.id, "tools/call arguments must be an object")


class _DuplicateKey(Exception):
    pass


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey
    return result


def _has_duplicate_keys(line: bytes) -> bool:
    try:
        json.loads(line, object_pairs_hook=_pairs_hook)
    except _DuplicateKey:
        return True
    except (ValueError, RecursionError):
        return True  # stdlib cannot vouch for it: refuse rather than guess
    return False


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
    return orjson.dumps({"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": error}) + b"\n"


def notification_line(method: str, params: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": JSONRPC_VERSION, "method": method, "params": params}) + b"\n"


def message_line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


# ---- server -> client lines: relayed as raw bytes, only their id and kind are looked at ----

_PREFIX: Final = b'{"jsonrpc":"2.0","id":'


@dataclass(frozen=True, slots=True)
class ServerLine:
    kind: Kind
    id: RequestId | None
    obj: dict[str, Any] | None  # the parsed object when the fast path did not apply


def classify_server_line(line: bytes) -> ServerLine | None:
    """Kind and id of a server line without parsing the body when it has the usual shape
    (``{"jsonrpc":"2.0","id":<id>,"result"|"error"|"method":...``); None for junk."""
    if line.startswith(_PREFIX):
        fast = _fast_classify(line)
        if fast is not None:
            return fast
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return classify_server_object(obj)


def classify_server_object(obj: object) -> ServerLine | None:
    if type(obj) is not dict:
        return None
    req_id = obj.get("id")
    if "method" in obj:
        if type(obj["method"]) is not str:
            return None
        if "id" in obj:
            return ServerLine(Kind.REQUEST, req_id, obj) if valid_id(req_id) else None
        return ServerLine(Kind.NOTIFICATION, None, obj)
    if "id" in obj and (("result" in obj) != ("error" in obj)):
        return ServerLine(Kind.RESPONSE, req_id if valid_id(req_id) else None, obj)
    return None


def _fast_classify(line: bytes) -> ServerLine | None:
    start = len(_PREFIX)
    req_id: RequestId
    if line[start : start + 1] == b'"':
        end = line.find(b'"', start + 1)
        if end < 0 or end - start > MAX_ID_CHARS * 4 or b"\\" in line[start:end]:
            return None
        try:
            req_id = line[start + 1 : end].decode()
        except UnicodeDecodeError:
            return None
        end += 1
    else:
        end = line.find(b",", start, start + 24)
        if end < 0:
            return None
        token = line[start:end]
        if not token.lstrip(b"-").isdigit():
            return None
        req_id = int(token)
    if not valid_id(req_id):
        return None
    rest = line[end : end + 12]
    if rest.startswith((b',"result":', b',"error":')):
        return ServerLine(Kind.RESPONSE, req_id, None)
    if rest.startswith(b',"method":'):
        return ServerLine(Kind.REQUEST, req_id, None)
    return None
