"""Long server responses checked by their skeleton (aip.shared.jsonlong): never more lenient
than the full strict decoder about structure, and the same id, kind and envelope."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.shared.jsonlong import LONG_LINE_BYTES, LONG_STRING_BYTES, skeleton
from aip.shared.jsonrpc import Kind, RpcReject, parse_line

BIG = "x" * (LONG_LINE_BYTES + 10)


def _line(obj: Any) -> bytes:
    return orjson.dumps(obj) + b"\n"


def test_a_text_result_is_checked_by_its_skeleton() -> None:
    line = _line(
        {"jsonrpc": "2.0", "id": 5, "result": {"content": [{"type": "text", "text": BIG}]}}
    )
    msg = parse_line(line, long_responses=True)
    assert msg.partial
    assert (msg.kind, msg.id) == (Kind.RESPONSE, 5)
    assert msg.wire == line.strip()  # forwarded as written
    assert msg.obj["result"]["content"][0]["text"] == ""  # never the content
    assert not parse_line(line).partial  # the client side always decodes whole


@pytest.mark.parametrize(
    "text",
    [
        b'{"jsonrpc":"2.0","id":5,"result":{"t":"%s"},"id":6}',  # the forged id of issue 11.5
        b'{"jsonrpc":"2.0","id":5,"result":{"t":"%s","t":"y"}}',
        b'{"jsonrpc":"2.0","id":5,"result":{"%s":1,"%s":2}}',  # long keys are kept: seen
        b'{"jsonrpc":"2.0","id":5,"result":{"a":["%s",{"k":1,"k" :2}]}}',
        b'{"jsonrpc":"2.0","id":5,"result":{"t":"%s","n":1e400}}',
        b'{"jsonrpc":"2.0","id":5,"result":"%s","error":{}}',
    ],
)
def test_what_the_full_decoder_refuses_stays_refused(text: bytes) -> None:
    line = text.replace(b"%s", BIG.encode())
    with pytest.raises(RpcReject):
        parse_line(line, long_responses=True)


def test_requests_and_odd_ids_are_decoded_whole() -> None:
    request = _line(
        {"jsonrpc": "2.0", "id": 1, "method": "sampling/createMessage", "params": {"t": BIG}}
    )
    assert not parse_line(request, long_responses=True).partial
    long_id = _line({"jsonrpc": "2.0", "id": "i" * (LONG_STRING_BYTES + 1), "result": {"t": BIG}})
    with pytest.raises(RpcReject, match="id must be"):
        parse_line(long_id, long_responses=True)  # not read as the emptied id ""


def test_escaped_quotes_and_backslashes_end_strings_where_json_says() -> None:
    tricky = 'a\\" "id": 9, "x' * 3 + "\\\\" + "y" * LONG_STRING_BYTES + '\\\\"'
    obj = {"jsonrpc": "2.0", "id": 5, "result": {"t": tricky, "u": BIG}}
    line = _line(obj)
    skel = skeleton(line.strip())
    assert skel is not None
    assert json.loads(skel) == {"jsonrpc": "2.0", "id": 5, "result": {"t": "", "u": ""}}
    assert parse_line(line, long_responses=True).id == 5


def test_quote_heavy_text_is_left_to_the_full_decoder() -> None:
    text = '"quoted" ' * 2000
    assert skeleton(_line({"jsonrpc": "2.0", "id": 1, "result": {"t": text}}).strip()) is None
    run = "x" * LONG_LINE_BYTES + "\\" * 200  # a long backslash run before the closing quote
    assert skeleton(_line({"jsonrpc": "2.0", "id": 1, "result": {"t": run}}).strip()) is None


_keys = st.sampled_from(["id", "t", "k", "result", "x" * LONG_STRING_BYTES])
_leaf = st.one_of(
    st.integers(-5, 5),
    st.sampled_from(["", "s", '"q"', "\\", "y" * LONG_STRING_BYTES, 'z\\"' * 400]),
)
_tree = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.lists(st.tuples(_keys, inner), max_size=3)
    ),
    max_leaves=12,
)


def _text(value: Any) -> str:
    """JSON text of a tree whose objects are lists of pairs: duplicates stay duplicates."""
    if isinstance(value, list) and value and all(isinstance(p, tuple) for p in value):
        return "{" + ",".join(f"{json.dumps(k)}:{_text(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return json.dumps(value)


@settings(max_examples=300, deadline=None)
@given(result=_tree, rid=st.one_of(st.integers(0, 9), st.sampled_from(["a", ""])), extra=_tree)
def test_the_skeleton_never_accepts_what_the_full_decoder_refuses(
    result: Any, rid: Any, extra: Any
) -> None:
    body = f'"jsonrpc":"2.0","id":{json.dumps(rid)},"result":{_text(result)}'
    text = ("{" + body + f',"pad":"{BIG}","extra":{_text(extra)}' + "}").encode()
    assert _outcome(text, long_responses=True) == _outcome(text, long_responses=False)


def _outcome(text: bytes, *, long_responses: bool) -> tuple[object, ...]:
    try:
        msg = parse_line(text, long_responses=long_responses)
    except RpcReject as exc:
        return ("refused", exc.request_id)
    return (msg.kind, msg.id, msg.wire)
