"""Strict in both directions, through the real proxy and hostile raw servers (issue 11
findings 5 and 9, the fault cases; issue 12 items 7 and 8): a server line two readers would
read differently never reaches the client, an answer to a call the proxy did not forward is
dropped and recorded, a server that closed its stdout is a server gone, and what the client
wrote reaches the server byte for byte."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.proxy.conftest import DEFAULT_SPEC
from tests.support.approverproc import Approver, answer_program, short_dir, wait_for
from tests.support.proxyproc import RAW_SERVER, ProxyProcess, write_policy

Make = Callable[..., ProxyProcess]


def _dropped(p: ProxyProcess) -> list[dict[str, Any]]:
    return [r for r in p.decisions() if "server message dropped" in r.get("detail", "")]


def _refused(p: ProxyProcess) -> list[dict[str, Any]]:
    return [r for r in p.decisions() if r["outcome"] == "internal_error"]


def _exchange(p: ProxyProcess, request_id: int, method: str, params: Any) -> list[Any]:
    """Send a request; every line the client gets up to its answer."""
    p.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    lines = [p.recv()]
    while lines[-1].get("id") != request_id:
        lines.append(p.recv())
    return lines


def test_server_cannot_answer_a_call_waiting_for_a_human() -> None:
    """``{"id":5,"result":…,"id":"victim"}``: a prefix reader sees 5, the SDKs see "victim",
    which is still waiting for a human. Refused (call 5 gets an error), and the clean forgery
    for "victim" that follows is dropped: the client never sees a result for it."""
    with short_dir() as folder:
        never = answer_program(folder, "never")
        with Approver(folder, f"exec:{never}", timeout_s=30).wait_ready() as approver:
            p = ProxyProcess(
                write_policy(folder, DEFAULT_SPEC),
                [*RAW_SERVER, "--mode", "dupid", "victim"],
                folder,
                extra_args=["--approver", approver.endpoint, "--agent-id", "strict"],
            )
            try:
                p.send(
                    {
                        "jsonrpc": "2.0",
                        "id": "victim",
                        "method": "tools/call",
                        "params": {"name": "write_file", "arguments": {"path": "/tmp/v"}},
                    }
                )
                wait_for(lambda: "asking a human about write_file" in p.log(), 20, "the ask")
                seen = _exchange(p, 5, "tools/call", {"name": "read_file", "arguments": {}})
                seen += _exchange(p, 6, "ping", {})
                assert [m.get("id") for m in seen] == [5, 6]  # nothing for "victim"
                assert "duplicate key" in seen[0]["error"]["data"]["detail"]
                # The records are written by the relay thread that refused the lines, which
                # may finish a moment after the client got its answer: wait for them.
                wait_for(lambda: len(_dropped(p)) >= 4, 10, "four dropped-message records")
                dropped = _dropped(p)
                assert [r["request_id"] for r in dropped] == ["victim", 5, "victim", 6]
                assert [r["outcome"] for r in dropped] == ["invalid_request"] * 4
                wait_for(lambda: len(_refused(p)) >= 2, 10, "two refused-call records")
                assert [r["request_id"] for r in _refused(p)] == [5, 6]
            finally:
                p.kill()
                approver.stop()  # SIGTERM: it ends the open dialog, a SIGKILL would orphan it


def test_duplicate_keys_deep_in_a_server_result_are_refused(make_proxy: Make) -> None:
    p = make_proxy([*RAW_SERVER, "--mode", "dupid", "elsewhere"])
    reply = p.request(1, "ping")
    assert reply["error"]["code"] == -32603
    assert reply["error"]["data"]["detail"].startswith("server response refused: duplicate key")


@pytest.mark.parametrize("sandbox", ["require", "off"])
def test_server_that_closes_stdout_is_gone(make_proxy: Make, tmp_path: Path, sandbox: str) -> None:
    """Under bubblewrap too: its own processes never hold the server's stdout (stdout_pipe)."""
    pidfile = tmp_path / "server.pid"
    p = make_proxy(
        [*RAW_SERVER, "--mode", "close-stdout", str(pidfile)], env={"AIP_SANDBOX": sandbox}
    )
    p.initialize()
    started = time.monotonic()
    reply = p.call(1, "read_file", {"path": "/tmp/a"})
    assert reply["error"]["code"] == -32603
    assert reply["error"]["data"]["reason"] == "server_exited"
    # Answered at once, not after the stop sequence (stdin grace + SIGTERM grace: 0.6 s here).
    assert time.monotonic() - started < 5
    p.wait(20)
    assert json.loads(pidfile.read_text())  # it ran (its pid is the sandbox's own numbering)
    assert _running_with(str(pidfile)) == []  # the tree was stopped, sandbox processes included
    assert "MCP server closed its stdout" in p.log()
    records = [r for r in p.decisions() if r["outcome"] == "server_exited"]
    assert [r["request_id"] for r in records] == [1]


def _running_with(argument: str) -> list[int]:
    """Live (non-zombie) processes with ``argument`` on their command line."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if argument in (proc.info["cmdline"] or []) and proc.info["status"] != "zombie":
            found.append(proc.pid)
    return found


EXACT_ARGS = (
    b'{"big":18446744073709551616,"neg":-18446744073709551617,"zero":-0,"e":1E5,'
    b'"f":-0.0,"s":"\\ud800 \\udc00","esc":"\\u002f"}'
)


def test_forwarding_is_byte_exact(make_proxy: Make, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    p = make_proxy([*RAW_SERVER, "--log", str(log)])
    p.initialize()
    line = (
        b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_file",'
        b'"arguments":' + EXACT_ARGS + b"}}"
    )
    p.send(line + b"\n")
    reply = p.recv_id(3)
    assert "result" in reply, reply
    assert log.read_bytes().splitlines()[-1] == line
    # The server (Python's json) read the exact integers, not doubles.
    seen = json.loads(reply["result"]["content"][0]["text"])
    assert seen["big"] == 18446744073709551616
    assert seen["neg"] == -18446744073709551617
    assert seen["s"] == "\ud800 \udc00"
    allowed = [r for r in p.decisions() if r["outcome"] == "policy_allowed"]
    assert allowed[-1]["request_id"] == 3


KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"
REDACT = """
allowed_tools: [read_file]
dlp:
  scan_requests: true
  builtin: true
  on_request_match: redact
"""


def test_a_redacted_call_keeps_the_clients_numbers_and_strings(
    make_proxy: Make, tmp_path: Path
) -> None:
    """The policy changed the message (DLP redact): re-serialized, but only the secret
    changes; 1E5, -0, a 65-bit integer and a lone surrogate next to it stay as written."""
    log = tmp_path / "server.log"
    policy = write_policy(tmp_path, REDACT, "redact")
    p = make_proxy([*RAW_SERVER, "--log", str(log)], policy_path=policy)
    p.initialize()
    line = (
        b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"read_file",'
        b'"arguments":{"key":"k=' + KEY.encode() + b'","e":1E5,"zero":-0,'
        b'"big":18446744073709551616,"s":"\\ud800"}}}'
    )
    p.send(line + b"\n")
    assert "result" in p.recv_id(4)
    forwarded = log.read_bytes().splitlines()[-1]
    assert KEY.encode() not in forwarded
    assert forwarded == line.replace(KEY.encode(), b"[REDACTED:aws-access-key]")
