"""DLP everywhere a text goes (issue 11, finding 7): a secret the client or the server puts in
any field other than the arguments (clientInfo.name, a tool name, a request id, a method, a
server's forged id) never reaches the proxy's stderr, the approver's log or the central audit
log; spelled with an invisible character (which ``repr`` in a detail or log line turns into an
escape) it is caught too. Through a real ``aip-proxy`` and a real approver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.audit_schema_check import assert_valid_log
from tests.support.approverproc import Approver, answer_program, wait_for
from tests.support.proxyproc import RAW_SERVER, ProxyProcess, write_policy
from tests.support.secret_server import AWS_KEY

pytestmark = pytest.mark.e2e

MARK = "[REDACTED:aws-access-key]"
TAIL = AWS_KEY[4:]  # contiguous in every spelling below: its absence means no leak
ZW = AWS_KEY[:4] + "\u200b" + TAIL  # repr() writes it as AKIA\u200b...
CGJ = AWS_KEY[:4] + "\u034f" + TAIL  # printable to repr(): stays a raw character


def test_a_secret_in_any_field_never_reaches_a_log(folder: Path) -> None:
    approver = Approver(folder, f"exec:{answer_program(folder, 'deny')}").wait_ready()
    policy = write_policy(
        folder,
        "allowed_tools: [read_file]\ntool_rules:\n  - tool: write_file\n    action: ask\n",
    )
    proxy = ProxyProcess(
        policy,
        [*RAW_SERVER, "--mode", "forge"],
        folder,
        extra_args=["--approver", approver.endpoint],
    )
    try:
        proxy.request(
            0,
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": f"agent {CGJ}", "version": "1"},
            },
        )
        proxy.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        denied = proxy.call(f"id {AWS_KEY}", f"tool-{ZW}", {})  # not allowed: id and name
        assert denied["error"]["code"] == -32001
        allowed = proxy.call(f"id {CGJ}", "read_file", {"path": "/tmp/x"})
        assert "result" in allowed  # the forged response for another id was dropped first
        asked = proxy.call(f"ask {ZW}", "write_file", {"path": "/tmp/y"})
        assert asked["error"]["code"] == -32002  # the human said no
        bad = proxy.request(5, f"x/{ZW}")  # method_not_allowed; the detail quotes the method
        assert bad["error"]["code"] == -32006
        proxy.send({"jsonrpc": "2.0", "method": f"notifications/{AWS_KEY}"})  # dropped
        proxy.request(6, "ping")

        def all_recorded() -> bool:
            text = approver.audit_path.read_text() if approver.audit_path.exists() else ""
            return text.count('"event":"decision"') >= 4 and "dropped_notification" in text

        wait_for(all_recorded, 15, "every record in the central audit log")
        proxy.close_stdin()
        proxy.wait()
    finally:
        proxy.kill()
        approver.stop()
    records = [json.loads(x) for x in approver.audit_path.read_text().splitlines()]
    everything = proxy.log() + approver.log() + approver.audit_path.read_text()
    assert TAIL not in everything
    assert "\\u200b" + TAIL not in everything
    assert_valid_log(approver.audit_path)
    by_tool = {r.get("tool"): r for r in records if r.get("event") == "decision"}
    assert by_tool[f"tool-{MARK}"]["request_id"] == f"id {MARK}"
    assert by_tool["read_file"]["request_id"] == f"id {MARK}"
    assert by_tool["write_file"]["request_id"] == f"ask {MARK}"  # the approver's own record
    assert by_tool["write_file"]["reason"] == "human denied"
    assert all(r["agent_id"].startswith(f"agent {MARK}-") for r in by_tool.values())
    assert "aws-access-key:1" in by_tool[f"tool-{MARK}"]["dlp"]
    assert MARK in next(r["detail"] for r in records if r.get("outcome") == "method_not_allowed")
    # the forged response's id was logged and recorded, redacted
    assert "dropped a server message" in proxy.log()
    dropped = [r for r in records if "server message dropped" in str(r.get("detail"))]
    assert any(MARK in str(r["request_id"]) for r in dropped)
