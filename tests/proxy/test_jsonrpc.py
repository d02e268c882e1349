"""The JSON-RPC wire module: strict parsing in both directions (property-tested against the
stdlib), the exact line forwarded, the id a refused line still shows, error replies."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.shared.jsonrpc import Kind, RpcReject, error_line, parse_line, valid_id
from aip.shared.jsontext import decode, reserialize, scan_id
from aip.shared.outcomes import Outcome

json_scalars = st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)
ids = st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    req_id=ids,
    args=st.dictionaries(st.text(max_size=6), json_values, max_size=5),
    indent=st.sampled_from([None, 1]),
)
def test_accepted_lines_forward_the_line_as_written(
    req_id: Any, args: dict[str, Any], indent: int | None
) -> None:
    obj = {
        "jsonrpc": "2.0",
        "id": req_id,
        "method": "tools/call",
        "params": {"name": "t", "arguments": args},
    }
    line = json.dumps(obj, indent=indent).replace("\n", " ").encode()
    msg = parse_line(b" " + line + b"\r\n")
    assert msg.kind is Kind.REQUEST
    assert msg.id == req_id
    assert msg.wire == line
    assert msg.obj == obj


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(min_size=1, max_size=5),
    a=json_values,
    b=json_values,
    depth=st.integers(0, 3),
    spaced=st.booleans(),
)
def test_duplicate_keys_are_rejected_at_any_depth(
    key: str, a: Any, b: Any, depth: int, spaced: bool
) -> None:
    sep = ", " if spaced else ","
    k = json.dumps(key)
    inner = "{" + k + ":" + json.dumps(a) + sep + k + ":" + json.dumps(b) + "}"
    for _ in range(depth):
        inner = '{"x":[' + inner + "]}"
    line = (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":'
        + inner
        + "}}"
    ).encode()
    with pytest.raises(RpcReject) as exc:
        parse_line(line)
    assert exc.value.outcome is Outcome.INVALID_REQUEST
    assert exc.value.request_id == 1


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (1, True),
        (-(2**53) + 1, True),
        (2**53 - 1, True),
        (2**53, False),
        (True, False),
        (1.0, False),
        (None, False),
        ("x" * 256, True),
        ("x" * 257, False),
        ([], False),
    ],
)
def test_valid_id(value: object, ok: bool) -> None:
    assert valid_id(value) is ok


_IDS = [1, 0, -(2**53) + 1, 2**53 - 1, -(2**53), 2**53, 2**64, True, False, 1.0, None, "",
        "x" * 256, "x" * 257, [], {}]  # fmt: skip


@pytest.mark.parametrize("value", _IDS)
@pytest.mark.parametrize(
    "shape",
    ['{"jsonrpc":"2.0","id":%s,"method":"ping"}', '{"jsonrpc":"2.0","id":%s,"result":{}}'],
)
def test_parse_line_takes_exactly_the_ids_valid_id_takes(value: object, shape: str) -> None:
    """parse_line checks the id inline (per message, on both relay threads): the same rule."""
    line = (shape % json.dumps(value)).encode()
    if valid_id(value):
        assert parse_line(line).id == value
        return
    with pytest.raises(RpcReject) as exc:
        parse_line(line)
    assert exc.value.outcome is Outcome.INVALID_REQUEST
    assert exc.value.detail == "id must be a string or a safe integer"
    assert exc.value.request_id == (value if type(value) in (str, int) else None)


def test_notification_and_response_kinds() -> None:
    note = parse_line(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    assert note.kind is Kind.NOTIFICATION
    assert note.id is None
    resp = parse_line(b'{"jsonrpc":"2.0","id":"s1","result":{}}')
    assert resp.kind is Kind.RESPONSE
    assert resp.method is None


# A server line gets the client side's strictness: the first-id/last-id split is refused.
SERVER_REFUSED = [
    (b'{"jsonrpc":"2.0","id":5,"result":{"x":1},"id":6}', 5),
    (b'{"jsonrpc":"2.0","id":5,"result":{"a":1,"a":2}}', 5),
    (b'{"jsonrpc":"2.0","id":1,"result":{},"error":{}}', 1),
    (b'{"id":3,"result":{}}', 3),
    (b'{"jsonrpc":"2.0","id":1.5,"result":{}}', None),
    (b'{"jsonrpc":"2.0","id":true,"result":{}}', None),
    (b'{"jsonrpc":"2.0","id":99999999999999999999,"result":{}}', 99999999999999999999),
    (b"not json", None),
    (b"[1,2]", None),
    (b'{"jsonrpc":"2.0","id":1}', 1),
    (b'{"jsonrpc":"2.0","method":"notifications/message","params":[]}', None),
]


@pytest.mark.parametrize(("line", "request_id"), SERVER_REFUSED)
def test_server_lines_are_parsed_as_strictly_as_client_lines(line: bytes, request_id: Any) -> None:
    with pytest.raises(RpcReject) as exc:
        parse_line(line + b"\n")
    assert exc.value.request_id == request_id


@pytest.mark.parametrize(
    ("line", "kind", "request_id"),
    [
        (b'{"jsonrpc":"2.0","id":"a\\"b","result":{}}', Kind.RESPONSE, 'a"b'),
        (b'{"id":7,"method":"roots/list","jsonrpc":"2.0"}', Kind.REQUEST, 7),
        (
            b'{"jsonrpc":"2.0","method":"notifications/message","params":{}}',
            Kind.NOTIFICATION,
            None,
        ),
    ],
)
def test_server_line_kinds(line: bytes, kind: Kind, request_id: Any) -> None:
    msg = parse_line(line)
    assert (msg.kind, msg.id, msg.wire) == (kind, request_id, line)


# Issue 12 item 7: the line goes on byte for byte; the policy checks orjson's reading of it.
EXACT = [
    (b'{"n":18446744073709551616}', 1.8446744073709552e19),
    (b'{"n":-0}', 0),
    (b'{"n":1E5}', 100000.0),
    (b'{"n":-9223372036854775809}', -9.223372036854776e18),
    (b'{"n":"\\ud800"}', "\ufffd"),
    (b'{"n":"a\\udc00b\\ud83d\\ude00"}', "a\ufffdb\U0001f600"),
]


@pytest.mark.parametrize(("args", "checked"), EXACT)
def test_numbers_and_strings_are_forwarded_as_written(args: bytes, checked: Any) -> None:
    line = (
        b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"t","arguments":'
        + args
        + b"}}"
    )
    msg = parse_line(line + b"\n")
    assert msg.wire == line
    assert msg.obj["params"]["arguments"]["n"] == checked


@pytest.mark.parametrize(
    ("line", "detail"),
    [
        (b'{"jsonrpc":"2.0","id":9,"method":"x","params":{"n":1e400}}', "out of range"),
        (b'{"jsonrpc":"2.0","id":9,"method":"x","params":{"\\ud800":1,"\\udc00":2}}', "surrogate"),
        (b'{"jsonrpc":"2.0","id":9,"method":"x","params":{"a":"\\ud800","a":1}}', "duplicate"),
        (
            b'{"jsonrpc":"2.0","id":9,"method":"x","params":' + b"[" * 300 + b"]" * 300 + b"}",
            "deeper",
        ),
    ],
)
def test_refusals_of_valid_json_name_the_reason_and_the_id(line: bytes, detail: str) -> None:
    with pytest.raises(RpcReject) as exc:
        parse_line(line)
    assert exc.value.outcome is Outcome.INVALID_REQUEST
    assert detail in exc.value.detail
    assert exc.value.request_id == 9


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (b'{"jsonrpc":"2.0","id":18446744073709551616,"method":"x"}', 18446744073709551616),
        (b' {"params":{"id":1,"x":[{"id":2}]},"id":"top"}', "top"),
        (b'{"a":"id","b":["id"],"id" : -42 ,', -42),
        (b'{"jsonrpc":"2.0","id":"a\\"b\\u0041', None),
        (b'{"jsonrpc":"2.0","id":"a\\"b\\u0041"', 'a"bA'),
        (b'{"id":1.5}', None),
        (b'{"id":1e3}', None),
        (b'{"id":null}', None),
        (b'{"id":"\\ud800"}', None),
        (b'[{"id":1}]', None),
        (b'{"x":{"id":1}}', None),
        (b"\xff\xfe", None),
    ],
)
def test_lenient_id_scan_reads_only_the_top_level_id(text: bytes, found: Any) -> None:
    assert scan_id(text) == found


def test_error_line_echoes_an_id_beyond_64_bits_exactly() -> None:
    line = error_line(2**64, Outcome.INVALID_REQUEST)
    assert line.startswith(b'{"jsonrpc":"2.0","id":18446744073709551616,')
    assert json.loads(line)["error"]["data"]["request_id"] == 2**64


def test_error_line_carries_the_outcome_row() -> None:
    line = error_line(4, Outcome.RATE_LIMITED, tool="t", extra={"reason": "spoof", "rule": "r"})
    assert line.endswith(b"\n")
    obj = orjson.loads(line)
    assert obj["id"] == 4
    assert obj["error"]["code"] == -32003
    assert obj["error"]["message"] == "Rate limit exceeded"
    assert obj["error"]["data"] == {
        "reason": "rate_limited",
        "tool": "t",
        "request_id": 4,
        "rule": "r",
    }


@settings(max_examples=200, deadline=None)
@given(value=json_values, spaced=st.booleans())
def test_reserialize_keeps_what_did_not_change(value: Any, spaced: bool) -> None:
    text = json.dumps({"v": value, "n": 1}, separators=(", ", ": ") if spaced else None).encode()
    checked = decode(text)
    assert orjson.loads(reserialize(checked, text)) == checked
    changed = {**checked, "n": "[REDACTED]"}
    assert orjson.loads(reserialize(changed, text)) == changed


def test_reserialize_keeps_number_and_surrogate_spellings() -> None:
    text = b'{"a":1E5,"b":-0,"c":18446744073709551616,"s":"\\ud800","k":"x","l":[1.50]}'
    changed = {**decode(text), "k": "y"}
    assert reserialize(changed, text) == text.replace(b'"x"', b'"y"')
