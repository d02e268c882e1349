"""Malformed client input through the real proxy: the right error, nothing forwarded, and the
proxy keeps serving the next line (DESIGN §4.3, issue 2)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.proxy.conftest import DEFAULT_SPEC
from tests.support.proxyproc import RAW_SERVER, ProxyProcess, write_policy

CALL = b'"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/tmp/a"}}'

# (case, line, expected code, expected id in the reply)
CASES: list[tuple[str, bytes, int, Any]] = [
    ("invalid json", b"{not json", -32700, None),
    ("truncated", b'{"jsonrpc":"2.0","id":1,', -32700, 1),
    ("nan", b'{"jsonrpc":"2.0","id":1,"method":"ping","x":NaN}', -32700, 1),
    ("batch", b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', -32600, None),
    ("empty batch", b"[]", -32600, None),
    ("string", b'"hello"', -32600, None),
    ("number", b"42", -32600, None),
    ("null", b"null", -32600, None),
    ("dup top", b'{"jsonrpc":"2.0","id":5,' + CALL + b',"method":"ping"}', -32600, 5),
    (
        "dup deep",
        b'{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"read_file",'
        b'"arguments":{"path":"/tmp/ok","path":"/etc/passwd"}}}',
        -32600,
        6,
    ),
    (
        "dup nested list",
        b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file",'
        b'"arguments":{"path":"/tmp/a","opts":[{"a":1,"a":2}]}}}',
        -32600,
        7,
    ),
    ("params string", b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":"x"}', -32600, 8),
    ("params list", b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":[1]}', -32600, 9),
    (
        "arguments list",
        b'{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"read_file",'
        b'"arguments":[1]}}',
        -32600,
        10,
    ),
    ("no name", b'{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{}}', -32600, 11),
    ("id null", b'{"jsonrpc":"2.0","id":null,' + CALL + b"}", -32600, None),
    ("id float", b'{"jsonrpc":"2.0","id":1.0,' + CALL + b"}", -32600, None),
    ("id true", b'{"jsonrpc":"2.0","id":true,' + CALL + b"}", -32600, None),
    ("id object", b'{"jsonrpc":"2.0","id":{"a":1},' + CALL + b"}", -32600, None),
    ("id 2^53", b'{"jsonrpc":"2.0","id":9007199254740992,' + CALL + b"}", -32600, 2**53),
    ("id -2^53", b'{"jsonrpc":"2.0","id":-9007199254740992,' + CALL + b"}", -32600, -(2**53)),
    ("id 2^64", b'{"jsonrpc":"2.0","id":18446744073709551616,' + CALL + b"}", -32600, 2**64),
    ("id long", b'{"jsonrpc":"2.0","id":"' + b"a" * 257 + b'",' + CALL + b"}", -32600, "a" * 257),
    ("no jsonrpc", b'{"id":12,"method":"ping"}', -32600, 12),
    ("jsonrpc 1.0", b'{"jsonrpc":"1.0","id":13,"method":"ping"}', -32600, 13),
    ("method number", b'{"jsonrpc":"2.0","id":14,"method":7}', -32600, 14),
    ("neither", b'{"jsonrpc":"2.0","id":15}', -32600, 15),
    ("result and error", b'{"jsonrpc":"2.0","id":16,"result":{},"error":{}}', -32600, 16),
    ("invalid utf-8", b'{"jsonrpc":"2.0","id":17,"method":"ping","x":"\xff"}', -32700, 17),
    ("1e400", b'{"jsonrpc":"2.0","id":18,"method":"ping","x":1e400}', -32600, 18),
    (
        "deep",
        b'{"jsonrpc":"2.0","id":19,' + CALL[:-2] + b',"d":' + b"[" * 300 + b"]" * 300 + b"}}}",
        -32600,
        19,
    ),
    (
        "deep orjson",
        b'{"jsonrpc":"2.0","id":20,"method":"ping","x":' + b"[" * 1100 + b"]" * 1100 + b"}",
        -32600,
        20,
    ),
    (
        "broken and deep",  # too deep before it is seen broken
        b'{"jsonrpc":"2.0","id":"d","method":"ping","x":' + b"[" * 1100,
        -32600,
        "d",
    ),
    ("id in params only", b'{"jsonrpc":"2.0","params":{"id":21},"id":[1]', -32700, None),
]


# What the audit record holds of an id it cannot hold as is.
RECORDED_IDS: dict[Any, Any] = {2**64: str(2**64), "a" * 257: "a" * 256 + "...[1 more chars]"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProxyProcess, Path]]:
    """One proxy for the whole table: each case also proves the proxy keeps serving."""
    folder = tmp_path_factory.mktemp("bad-input")
    log = folder / "server.log"
    p = ProxyProcess(write_policy(folder, DEFAULT_SPEC), [*RAW_SERVER, "--log", str(log)], folder)
    try:
        p.initialize()
        yield p, log
    finally:
        p.kill()


@pytest.fixture
def proxy(make_proxy: Callable[..., ProxyProcess], tmp_path: Path) -> ProxyProcess:
    p = make_proxy([*RAW_SERVER, "--log", str(tmp_path / "server.log")])
    p.initialize()
    return p


@pytest.mark.parametrize(
    ("line", "code", "reply_id"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_line_is_rejected_and_the_next_line_served(
    shared: tuple[ProxyProcess, Path], line: bytes, code: int, reply_id: Any
) -> None:
    proxy, log = shared
    before = len(proxy.decisions())
    proxy.send(line + b"\n")
    reply = proxy.recv()
    assert reply["id"] == reply_id
    assert reply["error"]["code"] == code
    reason = "parse_error" if code == -32700 else "invalid_request"
    assert reply["error"]["data"]["reason"] == reason
    assert proxy.call(100, "read_file", {"path": "/tmp/next"})["result"]["content"]
    record = proxy.decisions()[before]  # recorded before the client heard of it
    assert (record["outcome"], record["decision"]) == (reason, "deny")
    assert record["request_id"] == RECORDED_IDS.get(reply_id, reply_id)
    forwarded = log.read_bytes()
    assert b"/tmp/a" not in forwarded
    assert b"/etc/passwd" not in forwarded


def test_over_long_line_is_rejected_without_buffering_it(
    make_proxy: Callable[..., ProxyProcess], tmp_path: Path
) -> None:
    p = make_proxy(
        [*RAW_SERVER, "--log", str(tmp_path / "server.log")],
        extra_args=["--max-line-bytes", "65536"],
    )
    p.initialize()
    big = (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":'
        b'{"text":"' + b"z" * 200_000 + b'"}}}\n'
    )
    p.send(big)
    reply = p.recv()
    assert reply["id"] == 1  # read from the head of the line
    assert reply["error"]["code"] == -32600
    assert p.call(2, "read_file", {"path": "/tmp/next"})["id"] == 2
    assert b"zzzz" not in (tmp_path / "server.log").read_bytes()


def test_default_limit_is_4_mib(make_proxy: Callable[..., ProxyProcess]) -> None:
    p = make_proxy()
    p.initialize()
    text = "q" * (4 * 1024 * 1024)
    p.send(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": text}},
        }
    )
    assert p.recv(timeout=20)["error"]["code"] == -32600
    just_under = "q" * (4 * 1024 * 1024 - 200)
    reply = p.call(2, "echo", {"text": just_under})
    assert "result" in reply


def test_blank_lines_are_ignored(proxy: ProxyProcess) -> None:
    proxy.send(b"\n   \n")
    assert proxy.request(3, "ping")["result"] == {}


def test_duplicate_in_flight_id_is_rejected(make_proxy: Callable[..., ProxyProcess]) -> None:
    p = make_proxy([*RAW_SERVER, "--mode", "server-request"])
    p.initialize()
    # "roots" makes the server wait for the client, so request 1 stays in flight.
    p.send(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "roots", "arguments": {}},
        }
    )
    server_request = p.recv()
    assert server_request["method"] == "roots/list"
    p.send({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    dup = p.recv()
    assert dup["error"]["code"] == -32600
    assert dup["id"] is None  # an answer with id 1 would end the original call
    assert dup["error"]["data"]["detail"] == "request id already in flight"
    p.send({"jsonrpc": "2.0", "id": server_request["id"], "result": {"roots": []}})
    assert "result" in p.recv_id(1)
