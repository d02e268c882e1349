"""The frame envelope and strict decoding: one ZeroMQ frame per message, an orjson object with
``v`` (PROTOCOL_VERSION) and ``type``.

Decoding is strict: unknown fields, wrong types and other versions raise ``ProtocolError``,
never anything else. A message is a frozen slots dataclass whose ``type`` field defaults to
its kind; its field annotations are the schema (only the shapes ``_checker`` knows).

The annotations are read as the text they are (``from __future__ import annotations``), names
looked up in the message's module, not through ``typing.get_type_hints``: the proxy's approval
client then never imports ``typing`` (~0.55 MB of RSS and ~4 ms per proxy, issue 16).
tests/shared/test_protocol_codec.py holds these checkers to the ones ``typing`` gave.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import sys
from collections.abc import Callable, Iterable
from itertools import repeat

import orjson

from aip.shared.errors import AipError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    _Check = Callable[[Any], Any]  # returns the converted value or raises ProtocolError

PROTOCOL_VERSION: Final = 1


class ProtocolError(ValueError, AipError):
    """A frame that is not a valid message of this protocol version."""


_CHECKS: dict[type[Any], dict[str, _Check]] = {}  # filled by message_table, at import time


def need(ok: bool, what: str) -> None:
    if not ok:
        raise ProtocolError(what)


def encode(msg: Any) -> bytes:
    """One frame. orjson serialises dataclasses (nested too) and StrEnums natively."""
    return orjson.dumps(msg)


def message_table(classes: Iterable[type[Any]]) -> dict[str, type[Any]]:
    """``type`` -> class for one direction; compiles the classes' checks now, so a field
    shape the decoder does not know fails at import, not on the first frame."""
    table = {}
    for cls in classes:
        _compile(cls)
        table[_kind(cls)] = cls
    return table


def decode(frame: bytes, table: dict[str, type[Any]]) -> Any:
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    need(isinstance(data, dict), "a message is a JSON object")
    v = data.get("v")
    need(type(v) is int and v == PROTOCOL_VERSION, f"unsupported protocol version {v!r}")
    kind = data.get("type")
    cls = table.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unexpected message type {kind!r}")
    return _build(cls, data)


def _build(cls: type[Any], data: dict[str, Any]) -> Any:
    checks = _CHECKS[cls]
    unknown = data.keys() - checks.keys()
    need(not unknown, f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
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


def _compile(cls: type[Any]) -> None:
    if cls not in _CHECKS:
        names = vars(sys.modules[cls.__module__])
        _CHECKS[cls] = {f.name: _checker(str(f.type), names) for f in dataclasses.fields(cls)}


def _checker(text: str, names: dict[str, Any]) -> _Check:
    """A strict checker for one annotation's text (only the shapes the messages use)."""
    options = _split(text, "|")
    if len(options) > 1:
        checks = [_checker(option, names) for option in options]
        return lambda value: _first_fit(checks, value)
    text = text.strip()
    head, _, rest = text.partition("[")
    args = _split(rest[:-1], ",") if rest.endswith("]") else []
    if text == "None":
        return lambda value: _expect(value is None, "null", value)
    if text == "Any":
        return lambda value: value
    if head == "dict" and len(args) == 2:
        return lambda value: _expect(isinstance(value, dict), "an object", value)
    if head == "list" and len(args) == 1:
        item_text = args[0].strip()
        if item_text.partition("[")[0] == "dict":
            return _dict_list  # audit records: up to 64 per frame, checked without a call each
        if item_text == "int":
            return _int_list  # an audit_ack's rseqs: up to 64, on the approval thread
        item = _checker(item_text, names)
        return lambda value: [item(x) for x in _expect(isinstance(value, list), "a list", value)]
    tp = names.get(text, getattr(builtins, text, None)) if not rest else None
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
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        sub = tp
        _compile(sub)
        return lambda value: _build(sub, _expect(isinstance(value, dict), "an object", value))
    raise TypeError(f"no protocol checker for {text!r}")


def _split(text: str, sep: str) -> list[str]:
    """``text`` cut at each ``sep`` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _dict_list(value: Any) -> list[Any]:
    """``list[dict[...]]``: the same check (and error) as the generic list of objects."""
    _expect(isinstance(value, list), "a list", value)
    if not all(map(isinstance, value, repeat(dict))):  # one pass in C (issue 16)
        for x in value:
            _expect(isinstance(x, dict), "an object", x)
    return list(value)


def _int_list(value: Any) -> list[Any]:
    """``list[int]``: the same check (and error) as the generic list of integers."""
    _expect(isinstance(value, list), "a list", value)
    if list(map(type, value)).count(int) != len(value):  # one pass in C, no bool
        for x in value:
            _expect(type(x) is int, "an integer", x)
    return list(value)


def _expect(ok: bool, what: str, value: Any) -> Any:
    need(ok, f"expected {what}, got {type(value).__name__}")
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
