"""The codec's checkers, made from the messages' annotations read as text, against the ones
``typing.get_type_hints`` gave before (kept here as the reference): for every field of every
message, the same values pass, converted alike, and the same values fail with the same words.
And every direction's table compiles (they are built at first use, not at import)."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Union

import pytest

from aip.shared.protocol import codec, frames
from aip.shared.protocol.codec import ProtocolError
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
    HumanDecision,
    PolicyRef,
    Welcome,
)
from aip.shared.protocol.status import DialogStatus, ProxyStatus, Status, StatusReply

CLASSES = [
    Hello, Ask, Cancel, Audit, Bye, Welcome, Decision, AuditAck, Error, PolicyRef,
    HumanDecision, Status, StatusReply, ProxyStatus, DialogStatus, Grants, GrantsReply,
]  # fmt: skip


def reference(tp: Any) -> codec._Check:
    """The checker as the codec made it from ``typing`` (before issue 16's change)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [reference(arg) for arg in typing.get_args(tp)]
        return lambda value: codec._first_fit(options, value)
    if tp is type(None):
        return lambda value: codec._expect(value is None, "null", value)
    if tp is bool:
        return lambda value: codec._expect(type(value) is bool, "a boolean", value)
    if tp is int:
        return lambda value: codec._expect(type(value) is int, "an integer", value)
    if tp is float:
        return lambda value: float(codec._expect(type(value) in (int, float), "a number", value))
    if tp is str:
        return lambda value: codec._expect(type(value) is str, "a string", value)
    if isinstance(tp, type) and issubclass(tp, enum.StrEnum):
        return lambda value: codec._enum(tp, value)
    if origin is dict:
        return lambda value: codec._expect(isinstance(value, dict), "an object", value)
    if origin is list:
        if typing.get_origin(typing.get_args(tp)[0]) is dict:
            return codec._dict_list
        if typing.get_args(tp)[0] is int:
            return codec._int_list
        item = reference(typing.get_args(tp)[0])
        return lambda value: [
            item(x) for x in codec._expect(isinstance(value, list), "a list", value)
        ]
    if tp is Any:
        return lambda value: value
    if dataclasses.is_dataclass(tp):
        sub = typing.cast(type[Any], tp)
        codec._compile(sub)
        return lambda value: codec._build(
            sub, codec._expect(isinstance(value, dict), "an object", value)
        )
    raise TypeError(f"no protocol checker for {tp!r}")


SESSION = "0123456789abcdef"
NONCE = "0" * 32
VALUES: list[Any] = [
    None, True, False, 0, 7, -1, 2**60, 1.5, "", "x", "timeout", "hello", "list", "revoke",
    "human_approved", [], [1, 2], [True], ["a"], [{}], [{"a": 1}], [None], {}, {"a": 1},
    {"name": "p", "sha256": "0" * 64},
    {"approved": True, "response_time_ms": 5, "dialog_shown_at": "t"},
    {"approved": "yes", "response_time_ms": 5, "dialog_shown_at": "t"},
    {"session": SESSION, "pid": 1, "agent_id": "a", "server": "s",
     "policy": {"name": "p", "sha256": "s"}, "pending": 0},
    [{"session": SESSION, "pid": 1, "agent_id": "a", "server": "s",
      "policy": {"name": "p", "sha256": "s"}, "pending": 0}],
    {"server_sha256": "a" * 64, "tool_sha256": "", "args_sha256": "b" * 64},
    {"unknown": 1},
]  # fmt: skip


def outcome(check: codec._Check, value: Any) -> tuple[str, Any]:
    try:
        result = check(value)
    except ProtocolError as exc:
        return "error", str(exc)
    return "ok", (type(result).__name__, result)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_text_checkers_are_the_typing_ones(cls: type[Any]) -> None:
    hints = typing.get_type_hints(cls, localns={"Any": Any})  # Any: for the type checker only
    names = vars(__import__(cls.__module__, fromlist=["_"]))
    for field in dataclasses.fields(cls):
        mine, theirs = codec._checker(str(field.type), names), reference(hints[field.name])
        for value in VALUES:
            assert outcome(mine, value) == outcome(theirs, value), (cls, field.name, value)


def test_unknown_shapes_fail_when_compiled() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Odd:
        when: set[int]
        type: str = "odd"

    with pytest.raises(TypeError, match="no protocol checker for 'set\\[int\\]'"):
        codec.message_table([Odd])


def test_every_table_compiles_and_the_unions_exist() -> None:
    for direction in ("session_reply", "to_approver", "to_proxy"):
        assert frames._table(direction)
    assert {Status, Grants} == frames.LOCAL_ONLY
    assert typing.get_args(frames.ToProxy) == (
        Welcome, Decision, AuditAck, Error, StatusReply, GrantsReply,
    )  # fmt: skip
    with pytest.raises(AttributeError):
        frames.nothing  # noqa: B018


def test_a_proxy_session_refuses_control_plane_replies() -> None:
    reply = StatusReply(
        ref=NONCE, pid=1, backend="", unavailable="", timeout_s=1.0, queued=0, pending=0,
        max_pending=1, max_pending_session=1, proxies=[], dialog=None, audit_path="/a",
        audit_available=True, audit_seq=None,
    )  # fmt: skip
    frame = codec.encode(reply)
    assert frames.decode_to_proxy(frame) == reply  # aipctl's clients still read it
    with pytest.raises(ProtocolError, match="unexpected message type 'status_reply'"):
        frames.decode_session_reply(frame)
