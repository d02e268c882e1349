"""The JSON-RPC wire module: strict client parsing (property-tested against the stdlib),
server line classification (fast path agrees with a full parse), error replies."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.shared.jsonrpc import (
    Kind,
    RpcReject,
    classify_server_line,
    classify_server_object,
    error_line,
    parse_client_line,
    valid_id,
)
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
def test_accepted_lines_forward_the_canonical_bytes(
    req_id: Any, args: dict[str, Any], indent: int | None
) -> None:
    obj = {
        "jsonrpc": "2.0",
        "id": req_id,
        "method": "tools/call",
        "params": {"name": "t", "arguments": args},
    }
    line = json.dumps(obj, indent=indent).replace("\n", " ").encode()
    msg = parse_client_line(line)
    assert msg.kind is Kind.REQUEST
    assert msg.id == req_id
    assert msg.wire == orjson.dumps(obj)
    assert orjson.loads(msg.wire) == obj


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
        parse_client_line(line)
    assert exc.value.outcome is Outcome.INVALID_REQUEST


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


def test_notification_and_response_kinds() -> None:
    note = parse_client_line(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    assert note.kind is Kind.NOTIFICATION
    assert note.id is None
    resp = parse_client_line(b'{"jsonrpc":"2.0","id":"s1","result":{}}')
    assert resp.kind is Kind.RESPONSE
    assert resp.method is None


SERVER_LINES = [
    b'{"jsonrpc":"2.0","id":1,"result":{"content":[]}}',
    b'{"jsonrpc":"2.0","id":-5,"error":{"code":-1,"message":"x"}}',
    b'{"jsonrpc":"2.0","id":"abc","result":{}}',
    b'{"jsonrpc":"2.0","id":"a\\"b","result":{}}',
    b'{"jsonrpc":"2.0","id":7,"method":"roots/list"}',
    b'{"jsonrpc":"2.0","method":"notifications/message","params":{}}',
    b'{"id":3,"jsonrpc":"2.0","result":{}}',
    b'{"jsonrpc":"2.0","id":1.5,"result":{}}',
    b'{"jsonrpc":"2.0","id":true,"result":{}}',
    b'{"jsonrpc":"2.0","id":99999999999999999999,"result":{}}',
    b"not json",
    b"[1,2]",
    b'{"jsonrpc":"2.0","id":1}',
]


@pytest.mark.parametrize("line", SERVER_LINES)
def test_fast_server_classification_agrees_with_a_full_parse(line: bytes) -> None:
    fast = classify_server_line(line + b"\n")
    try:
        full = classify_server_object(orjson.loads(line))
    except orjson.JSONDecodeError:
        full = None
    if full is None:
        assert fast is None
        return
    assert fast is not None
    assert (fast.kind, fast.id) == (full.kind, full.id)


def test_fast_path_reads_only_the_head_of_a_line() -> None:
    # By design (perf-limits.md: do not re-parse responses): the body of a usual-shaped line
    # is not validated; the host's own parser sees it. Only kind and id are trusted.
    fast = classify_server_line(b'{"jsonrpc":"2.0","id":1,"result":{},"error":{}}\n')
    assert fast is not None
    assert (fast.kind, fast.id) == (Kind.RESPONSE, 1)


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
