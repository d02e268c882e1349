"""Fail-closed properties of the relay: any input gets an answer or a silent drop, never a
crash; an engine failure denies; forged server responses never reach the client."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.proxy.relay import upstream
from aip.shared.policy import engine
from aip.shared.policy.load import load_policy_text
from tests.support.proxyproc import RAW_SERVER, ProxyProcess
from tests.support.sessionkit import LocalSession, available

POLICY = load_policy_text(
    "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata: {name: r}\n"
    "spec:\n  allowed_tools: [read_file]\n"
)


def local() -> LocalSession:
    return LocalSession(POLICY, agent_id_fixed=False)


@pytest.fixture
def pipes() -> Iterator[LocalSession]:
    with local() as p:
        yield p


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
messages = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "jsonrpc": st.sampled_from(["2.0", "1.0"]),
            "method": st.sampled_from(
                ["tools/call", "ping", "initialize", "resources/read", "Tools/Call", "x"]
            ),
        },
        optional={"id": json_values, "params": json_values},
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=300, deadline=None)
@given(line=messages)
def test_every_line_is_answered_forwarded_or_dropped_never_crashes(line: bytes) -> None:
    with local() as p:
        upstream.handle_line(p.session, line + b"\n")
        to_host = available(p.host_r)
        to_server = available(p.server_r)
        assert not (to_host and to_server)  # never both: a message is answered or forwarded
        for out in (to_host, to_server):
            for raw in out.splitlines():
                json.loads(raw)  # whatever leaves is one JSON message per line
        if to_server:
            forwarded = json.loads(to_server)
            assert forwarded["jsonrpc"] == "2.0"
            if forwarded.get("method") == "tools/call":
                assert forwarded["params"]["name"] == "read_file"


def test_engine_failure_denies_with_internal_error(
    pipes: LocalSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(engine, "decide", broken)
    call = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "/tmp/a"}},
    }
    upstream.handle_line(pipes.session, json.dumps(call).encode() + b"\n")
    reply = json.loads(available(pipes.host_r))
    assert reply["error"]["code"] == -32603
    assert reply["error"]["data"]["reason"] == "internal_error"
    assert available(pipes.server_r) == b""


def test_forged_server_responses_never_reach_the_client(
    make_proxy: Callable[..., ProxyProcess],
) -> None:
    p = make_proxy([*RAW_SERVER, "--mode", "forge"])
    for request_id, method in ((0, "ping"), (1, "tools/list"), (2, "ping")):
        p.send({"jsonrpc": "2.0", "id": request_id, "method": method})
        reply = p.recv()  # the very next line: the forged ones before it were dropped
        assert reply["id"] == request_id
        assert "forged" not in json.dumps(reply)
    p.close_stdin()
    assert p.wait() == 0
    logged = [line for line in p.log().splitlines() if not line.startswith("{")]
    assert sum("response to an id that is not pending" in line for line in logged) == 6
    dropped = [r for r in p.decisions() if "server message dropped" in r.get("detail", "")]
    assert sorted(str(r["request_id"]) for r in dropped) == sorted(
        ["forged-0", "forged-1", "forged-2", "424242", "424242", "424242"]
    )
    assert {(r["decision"], r["outcome"]) for r in dropped} == {("deny", "invalid_request")}
