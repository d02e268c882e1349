"""Asks through the whole chain (mcp client -> aip-proxy -> MCPServer, real aip-approver with a
scripted ``exec:`` human): progress while the human decides, and a client that gives up."""

from __future__ import annotations

import os
import sys
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import pytest
from mcp import types
from mcp.client.session import ClientSession

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.approverproc import Approver, answer_program, wait_for  # noqa: E402
from tests.support.mcpclient import proxied_session, read_json_lines  # noqa: E402
from tests.support.proxyproc import write_policy  # noqa: E402

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


def client(folder: Path, endpoint: str) -> AbstractAsyncContextManager[ClientSession]:
    policy = write_policy(folder, SPEC, "asks")
    return proxied_session(folder, policy, endpoint, agent_id="agent-asks")


async def test_progress_while_the_human_decides_then_the_call_runs(folder: Path) -> None:
    prog = answer_program(folder, "slow:1.2:allow")
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    with Approver(folder, f"exec:{prog}", timeout_s=10).wait_ready() as approver:
        async with client(folder, approver.endpoint) as s:
            with anyio.fail_after(20):
                result = await s.call_tool(
                    "write_file",
                    {"path": "/etc/motd", "content": "hi"},
                    progress_callback=on_progress,
                )
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    assert block.text == "wrote 2 bytes to /etc/motd"
    assert len(progress) >= 2  # a client with a progressToken hears that we are waiting
    assert progress == sorted(progress)


async def test_client_that_gives_up_withdraws_the_ask(folder: Path) -> None:
    record = folder / "record.jsonl"
    env = {**os.environ, "AIP_TEST_RECORD": str(record)}
    prog = answer_program(folder, "never")
    with Approver(folder, f"exec:{prog}", timeout_s=30, env=env).wait_ready() as approver:
        async with client(folder, approver.endpoint) as s:
            with anyio.move_on_after(1.0):  # the mcp client sends notifications/cancelled
                await s.call_tool("write_file", {"path": "/etc/never", "content": "x"})
            # the dialog opened and is closed again without an answer
            wait_for(
                lambda: any(r["event"] == "open" for r in read_json_lines(record)), 10, "dialog"
            )
            with anyio.fail_after(20):
                assert _text(await s.call_tool("read_file", {"path": "/tmp/a"})) == (
                    "contents of /tmp/a"
                )
        t0 = time.monotonic()
        wait_for(
            lambda: (
                any(d.get("outcome") == "cancelled" for d in approver.decisions())
                or "cancel" in (folder / "proxy.stderr").read_text()
            ),
            10,
            "the cancel",
        )
        assert time.monotonic() - t0 < 10
    assert not any(r["event"] == "close" for r in read_json_lines(record))  # never answered
    log = (folder / "proxy.stderr").read_text()
    assert "client cancelled pending ask" in log


def _text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text
