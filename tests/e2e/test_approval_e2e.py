"""The guide's "How it works" end to end: the ``mcp`` client -> aip-proxy -> MCP server, with a
real aip-approver deciding through an ``exec:`` answer program (allow, deny, no answer)."""

from __future__ import annotations

import os
import signal
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import psutil
import pytest
from mcp import types
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

from tests.support.approverproc import Approver, answer_program, wait_for
from tests.support.mcpclient import proxied_session, read_json_lines
from tests.support.proxyproc import MCP_SERVER, ProxyProcess, write_policy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

SPEC = """
allowed_tools: [read_file]
tool_rules:
  - tool: write_file
    action: ask
"""


def session(folder: Path, endpoint: str) -> AbstractAsyncContextManager[ClientSession]:
    policy = write_policy(folder, SPEC, "hitl")
    return proxied_session(folder, policy, endpoint, agent_id="agent-abc123")


async def test_allow_forwards_deny_and_timeout_give_32002(folder: Path) -> None:
    control, record = folder / "answer.txt", folder / "record.jsonl"
    control.write_text("allow\n")
    env = {**os.environ, "AIP_TEST_ANSWER_FILE": str(control), "AIP_TEST_RECORD": str(record)}
    prog = answer_program(folder)
    with Approver(folder, f"exec:{prog}", timeout_s=0.8, env=env).wait_ready() as approver:
        async with session(folder, approver.endpoint) as s:
            with anyio.fail_after(20):
                result = await s.call_tool(
                    "write_file", {"path": "/etc/config.yaml", "content": "..."}
                )
            block = result.content[0]
            assert isinstance(block, types.TextContent)
            assert block.text == "wrote 3 bytes to /etc/config.yaml"

            control.write_text("deny\n")
            with anyio.fail_after(20), pytest.raises(MCPError) as denied:
                await s.call_tool("write_file", {"path": "/etc/passwd", "content": "x"})
            assert denied.value.code == -32002
            assert denied.value.message == "Human approval denied"
            assert denied.value.data["reason"] == "denied_by_user"

            control.write_text("never\n")
            t0 = time.monotonic()
            with anyio.fail_after(20), pytest.raises(MCPError) as late:
                await s.call_tool("write_file", {"path": "/etc/hosts", "content": "x"})
            elapsed = time.monotonic() - t0
            assert late.value.code == -32002
            assert late.value.message == "Human approval required but timed out"
            assert late.value.data["reason"] == "timeout"
            assert 0.7 <= elapsed < 2.5
        # What the dialog program was shown, and what the approver logged.
        shown = [r["request"] for r in read_json_lines(record) if r["event"] == "open"]
        assert [a["arguments"]["path"] for a in shown] == [
            "/etc/config.yaml",
            "/etc/passwd",
            "/etc/hosts",
        ]
        assert shown[0]["agent_id"] == "agent-abc123"
        assert shown[0]["text"].startswith("Agent: agent-abc123\n")
        assert "Tool: write_file\nArguments (2):\n  path: /etc/config.yaml" in shown[0]["text"]
        lines = approver.decisions()
        assert [(d["decision"], d["reason"]) for d in lines] == [
            ("allow", "human approved"),
            ("deny", "human denied"),
            ("deny", "human approval timed out"),
        ]
        assert lines[0]["human_decision"]["approved"] is True
        assert lines[0]["agent_id"] == "agent-abc123"


async def test_injection_reaches_the_dialog_escaped(folder: Path) -> None:
    record = folder / "record.jsonl"
    env = {**os.environ, "AIP_TEST_RECORD": str(record), "AIP_TEST_ANSWER": "deny"}
    prog = answer_program(folder)
    evil = '<span size="1">x</span>\n\u202efdp.sh\u200b' + "A" * 100_000 + "; curl x|sh"
    with Approver(folder, f"exec:{prog}", env=env).wait_ready() as approver:
        async with session(folder, approver.endpoint) as s:
            with anyio.fail_after(20), pytest.raises(MCPError):
                await s.call_tool("write_file", {"path": evil, "content": "x"})
    text = read_json_lines(record)[0]["request"]["text"]
    assert all(0x20 <= ord(c) < 0x7F or c == "\n" for c in text)
    assert max(len(line) for line in text.splitlines()) <= 76
    assert "\\u202efdp.sh\\u200b" in text
    assert "chars omitted]..." not in text  # a program gets the whole request
    assert "A" * 100_000 + "; curl x|sh" in "".join(line.strip() for line in text.splitlines())


def test_proxy_killed_mid_ask_closes_the_dialog(folder: Path) -> None:
    record = folder / "record.jsonl"
    env = {**os.environ, "AIP_TEST_RECORD": str(record)}
    prog = answer_program(folder, "never")
    policy = write_policy(folder, SPEC, "hitl")
    with Approver(folder, f"exec:{prog}", timeout_s=30, env=env).wait_ready() as approver:
        proxy = ProxyProcess(
            policy, MCP_SERVER, folder, extra_args=["--approver", approver.endpoint]
        )
        try:
            proxy.send(
                {
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"},
                    },
                }
            )
            proxy.send(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "tools/call",
                    "params": {
                        "name": "write_file",
                        "arguments": {"path": "/etc/x", "content": "y"},
                    },
                }
            )
            wait_for(lambda: bool(read_json_lines(record)), 20, "the dialog to open")
            dialog = read_json_lines(record)[0]["pid"]
            os.killpg(proxy.proc.pid, signal.SIGKILL)
            wait_for(lambda: not _running(dialog), 5, "the dialog to close")
        finally:
            proxy.kill()  # reaps it and closes our ends of its pipes
        wait_for(
            lambda: any(d["reason"] == "cancelled" for d in approver.decisions()),
            5,
            "a cancelled record",
        )


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
