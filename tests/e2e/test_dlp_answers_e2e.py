"""DLP on the client's answers to server requests, and ``redaction`` audit records (issue 11,
deliverable 6): the real ``mcp`` client answers the server's ``sampling/createMessage`` with a
secret from its context; ``on_request_match`` decides what the server gets, and the central
audit log records what DLP did there and to the server's responses (rule names, never the
secret). Through a real ``aip-proxy``, the ``mcp`` test server and a real approver."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from tests.audit_schema_check import assert_valid_log
from tests.support.approverproc import Approver, answer_program, wait_for
from tests.support.proxyproc import FAST_ENV, MCP_SERVER, proxy_command, write_policy
from tests.support.secret_server import AWS_KEY

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

MARK = "[REDACTED:aws-access-key]"


async def _leaky_llm(
    ctx: Any, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult:
    """The host's LLM, whose context holds a key, answers the server's sampling request."""
    content = types.TextContent(type="text", text=f"sure, the key is {AWS_KEY}")
    return types.CreateMessageResult(role="assistant", content=content, model="test-model")


@asynccontextmanager
async def proxied(folder: Path, on_match: str, endpoint: str) -> AsyncIterator[ClientSession]:
    spec = (
        "allowed_tools: [ask_llm, echo]\n"
        "dlp:\n  enabled: true\n  builtin: true\n  scan_requests: true\n"
        f"  on_request_match: {on_match}\n"
    )
    policy = write_policy(folder, spec, "answers")
    cmd = proxy_command()
    params = StdioServerParameters(
        command=cmd[0],
        args=[*cmd[1:], "--policy", str(policy), "--approver", endpoint, "--", *MCP_SERVER],
        env={**FAST_ENV, "AIP_AGENT_ID": "agent-answers"},
    )
    with (folder / "proxy.stderr").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, sampling_callback=_leaky_llm) as session,
        ):
            with anyio.fail_after(20):
                await session.initialize()
            yield session


def _text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


@pytest.mark.parametrize("on_match", ["block", "redact", "warn"])
async def test_answers_to_server_requests_get_dlp_and_every_action_is_recorded(
    folder: Path, on_match: str
) -> None:
    approver = Approver(folder, f"exec:{answer_program(folder, 'deny')}").wait_ready()
    try:
        async with proxied(folder, on_match, approver.endpoint) as s:
            with anyio.fail_after(20):
                try:
                    text = _text(await s.call_tool("ask_llm", {"prompt": "what is the key?"}))
                except MCPError as exc:  # the server passes its sampling error on
                    text, error = str(exc), exc
                else:
                    error = None

            def recorded() -> bool:
                log = approver.audit_path.read_text() if approver.audit_path.exists() else ""
                # warn: the response's own redaction record too (the client may see the
                # answer before the approver has that record's batch)
                back = '"direction":"to_client"' in log if on_match == "warn" else True
                return '"event":"redaction"' in log and '"tool":"ask_llm"' in log and back

            # while the proxy runs: an exiting proxy's records wait in its spool
            wait_for(recorded, 20, "the redaction record in the central audit log")
    finally:
        approver.stop()
    assert AWS_KEY not in text
    records = [json.loads(x) for x in approver.audit_path.read_text().splitlines()]
    events = [r for r in records if r["event"] == "redaction"]
    answer = next(r for r in events if r["direction"] == "to_server")
    assert answer["message"] == "answer"
    assert answer["dlp"] == ["aws-access-key:1"]
    assert (
        answer["action"] == {"block": "blocked", "redact": "redacted", "warn": "warned"}[on_match]
    )
    if on_match == "block":
        assert error is not None  # the server's sampling request got a DLP error instead
        assert error.error.code == -32001
        assert len(events) == 1
    elif on_match == "redact":
        assert error is None
        assert text == f"sure, the key is {MARK}"  # what the server received, echoed back
        assert len(events) == 1
    else:
        assert error is None
        # The server got the key and returned it; its response was redacted on the way back.
        assert text == f"sure, the key is {MARK}"
        back = next(r for r in events if r["direction"] == "to_client")
        assert back["message"] == "response"
        assert (back["method"], back["tool"], back["action"]) == (
            "tools/call",
            "ask_llm",
            "redacted",
        )
        assert back["dlp"] == ["aws-access-key:2"]  # content and structuredContent
    assert all(r["agent_id"] == "agent-answers" for r in events)
    everything = approver.audit_path.read_text() + (folder / "proxy.stderr").read_text()
    assert AWS_KEY not in everything
    assert_valid_log(approver.audit_path)
