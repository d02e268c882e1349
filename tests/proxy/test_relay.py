"""The relay through a real proxy and a raw JSON-RPC server: what is forwarded, answered,
dropped and filtered, in both directions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.proxyproc import RAW_SERVER, ProxyProcess, write_policy

Make = Callable[..., ProxyProcess]


def _server_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines() if path.exists() else []


def test_forwards_the_line_as_the_client_wrote_it(make_proxy: Make, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    p = make_proxy([*RAW_SERVER, "--log", str(log)])
    p.initialize()
    raw = (
        b'{ "jsonrpc" : "2.0", "id" : 7, "method" : "tools/call", "params" : { "name" : '
        b'"read_file", "arguments" : { "path" : "\\u002ftmp/caf\\u00e9", "n": 1E2 } } }\n'
    )
    p.send(raw)
    assert p.recv_id(7)["result"]["content"][0]["text"] == '{"n": 100.0, "path": "/tmp/caf\\u00e9"}'
    assert _server_lines(log)[-1] == raw.strip()


def test_blocked_call_gets_the_outcome_error_and_is_not_forwarded(
    make_proxy: Make, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    p = make_proxy([*RAW_SERVER, "--log", str(log)])
    p.initialize()
    reply = p.call("del-1", "delete_file", {"path": "/tmp/secret-target"})
    err = reply["error"]
    assert err["code"] == -32001
    assert err["message"] == "Forbidden"
    assert err["data"]["reason"] == "denied_tool"
    assert err["data"]["tool"] == "delete_file"
    assert err["data"]["request_id"] == "del-1"
    unknown = p.call(2, "format_disk", {})
    assert unknown["error"]["data"]["reason"] == "not_allowed"
    assert b"secret-target" not in log.read_bytes()
    assert b"format_disk" not in log.read_bytes()
    records = [r for r in p.decisions() if r.get("tool") == "delete_file"]
    assert records
    assert records[0]["decision"] == "deny"
    assert records[0]["reason"] == "tool denied"
    assert records[0]["agent_id"].startswith("rawtest-")


def test_method_not_allowed(make_proxy: Make) -> None:
    p = make_proxy()
    p.initialize()
    err = p.request(3, "resources/list")["error"]
    assert err["code"] == -32006
    assert err["data"]["reason"] == "method_not_allowed"


def test_blocked_notification_is_dropped_silently(make_proxy: Make, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    p = make_proxy([*RAW_SERVER, "--log", str(log)])
    p.initialize()
    p.send(
        {
            "jsonrpc": "2.0",
            "method": "tools/call",
            "params": {"name": "delete_file", "arguments": {"path": "/tmp/notif-blocked"}},
        }
    )
    p.send(
        {
            "jsonrpc": "2.0",
            "method": "tools/call",
            "params": {"name": "write_file", "arguments": {"path": "/tmp/notif-ask"}},
        }
    )
    p.send(
        {
            "jsonrpc": "2.0",
            "method": "tools/call",
            "params": {"name": "read_file", "arguments": {"path": "/tmp/notif-ok"}},
        }
    )
    # The reply to the ping is the first line out: the notifications got no answer.
    assert p.request(4, "ping") == {"jsonrpc": "2.0", "id": 4, "result": {}}
    sent = log.read_bytes()
    assert b"notif-blocked" not in sent
    assert b"notif-ask" not in sent
    assert b"notif-ok" in sent  # an allowed notification is forwarded
    dropped = [r for r in p.decisions() if r["event"] == "dropped_notification"]
    assert {r["tool"] for r in dropped} == {"delete_file", "write_file"}


def test_tools_list_is_filtered(make_proxy: Make) -> None:
    p = make_proxy([*RAW_SERVER, "--tools", "read_file,write_file,delete_file,unknown_tool"])
    p.initialize()
    tools = [t["name"] for t in p.request(2, "tools/list")["result"]["tools"]]
    assert tools == ["read_file", "write_file"]


def test_monitor_mode_forwards_and_records_what_enforce_would_do(
    make_proxy: Make, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, "mode: monitor\nallowed_tools: [read_file]\n", "mon")
    p = make_proxy([*RAW_SERVER, "--tools", "read_file,delete_file"], policy_path=policy)
    p.initialize()
    assert "result" in p.call(1, "delete_file", {"path": "/x"})
    tools = [t["name"] for t in p.request(2, "tools/list")["result"]["tools"]]
    assert tools == ["read_file", "delete_file"]
    (rec,) = [r for r in p.decisions() if r.get("tool") == "delete_file"]
    assert rec["decision"] == "allow"
    assert rec["reason"] == "monitor"
    assert rec["monitor"] == {"would": "not_allowed"}


def test_server_request_and_client_response_pass(make_proxy: Make, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    p = make_proxy([*RAW_SERVER, "--mode", "server-request", "--log", str(log)])
    p.initialize()
    p.send(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "roots", "arguments": {}},
        }
    )
    ask = p.recv()
    assert ask["method"] == "roots/list"
    # ping is answered while request 1 waits on the client
    assert p.request(2, "ping")["result"] == {}
    # a response to an id the server never used is dropped
    p.send({"jsonrpc": "2.0", "id": 999_999, "result": {"roots": [{"uri": "file:///forged"}]}})
    p.send({"jsonrpc": "2.0", "id": ask["id"], "result": {"roots": [{"uri": "file:///w"}]}})
    text = p.recv_id(1)["result"]["content"][0]["text"]
    assert json.loads(text) == {"roots": [{"uri": "file:///w"}]}
    assert b"forged" not in log.read_bytes()


def test_server_junk_is_dropped_and_responses_still_arrive(make_proxy: Make) -> None:
    p = make_proxy([*RAW_SERVER, "--mode", "junk"])
    assert p.initialize()["result"]["serverInfo"]["name"] == "raw-test-server"
    assert "result" in p.call(1, "read_file", {"path": "/tmp/a"})
    logged = [line for line in p.log().splitlines() if not line.startswith("{")]
    assert sum("dropped a server message" in line for line in logged) >= 6
    dropped = [r for r in p.decisions() if "server message dropped" in r.get("detail", "")]
    assert len(dropped) >= 6


def test_server_flood_is_relayed_in_order(make_proxy: Make) -> None:
    p = make_proxy([*RAW_SERVER, "--mode", "flood", "500"])
    p.send({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    seen = [p.recv()["params"]["data"] for _ in range(500)]
    assert seen == [f"flood {i}" for i in range(500)]
    assert p.recv()["id"] == 1


def test_server_line_over_limit_answers_its_call_at_once(make_proxy: Make) -> None:
    p = make_proxy([*RAW_SERVER, "--mode", "bigline", str(17 * 1024 * 1024)])
    p.send({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    reply = p.recv(timeout=20)  # the error, then the real response is no longer awaited
    assert reply["id"] == 1
    assert reply["error"]["code"] == -32603
    assert reply["error"]["data"]["reason"] == "internal_error"
    assert "over 16777216 bytes" in reply["error"]["data"]["detail"]
    assert p.request(2, "ping", timeout=20)["id"] == 2
    records = [r for r in p.decisions() if r["outcome"] == "internal_error"]
    assert records
    assert records[0]["request_id"] == 1
    assert "max-server-line-bytes" in records[0]["detail"]


def test_server_line_limit_is_a_setting(make_proxy: Make) -> None:
    small = make_proxy(
        [*RAW_SERVER, "--mode", "bigline", "100000"], env={"AIP_MAX_SERVER_LINE_BYTES": "65536"}
    )
    assert small.request(1, "ping")["error"]["data"]["reason"] == "internal_error"
    raised = make_proxy(
        [*RAW_SERVER, "--mode", "bigline", "100000"],
        extra_args=["--max-server-line-bytes", "200000"],
    )
    assert raised.request(1, "ping")["result"] == "y" * 100000


def test_large_result_is_relayed_unchanged(make_proxy: Make) -> None:
    p = make_proxy([*RAW_SERVER, "--payload", "3000000"])
    reply = p.call(1, "read_file", {"path": "/tmp/big"})
    assert len(reply["result"]["content"][0]["text"]) == 3_000_000


def test_ask_without_approver_is_denied_fast(make_proxy: Make, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    p = make_proxy([*RAW_SERVER, "--log", str(log)])
    p.initialize()
    t0 = time.monotonic()
    err = p.call(5, "write_file", {"path": "/etc/x", "content": "c"})["error"]
    assert time.monotonic() - t0 < 1.0
    assert err["code"] == -32002
    assert err["message"] == "Human approval unavailable"
    assert err["data"] == {"reason": "approver_unavailable", "tool": "write_file", "request_id": 5}
    assert b"/etc/x" not in log.read_bytes()


def test_agent_id_from_flag_and_environment(make_proxy: Make) -> None:
    p = make_proxy(extra_args=["--agent-id", "agent-abc123"])
    p.initialize()
    p.call(1, "delete_file", {"path": "/x"})
    assert p.decisions()[-1]["agent_id"] == "agent-abc123"
    q = make_proxy(env={"AIP_AGENT_ID": "from-env"})
    q.initialize()
    q.call(1, "delete_file", {"path": "/x"})
    assert q.decisions()[-1]["agent_id"] == "from-env"


def test_verbose_traces_without_argument_values(make_proxy: Make) -> None:
    p = make_proxy(extra_args=["--verbose"])
    p.initialize()
    p.call(1, "read_file", {"path": "/tmp/TOPSECRET-VALUE"})
    p.call(2, "write_file", {"path": "/tmp/ASKED-SECRET"})
    traces = [line for line in p.log().splitlines() if not line.startswith("{")]
    assert any("DEBUG" in line and "tools/call" in line for line in traces)
    assert not any("TOPSECRET" in line or "ASKED-SECRET" in line for line in traces)
