"""End to end: the official ``mcp`` client talks to an ``mcp`` MCPServer (formerly FastMCP)
through the installed ``aip-proxy``; allowed, blocked and asked calls, tools/list filtering,
notifications and server -> client requests, and ping while a call is in flight."""

from __future__ import annotations

import sys
import time
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

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.proxyproc import FAST_ENV, MCP_SERVER, proxy_command, write_policy  # noqa: E402

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

SPEC = """
allowed_tools: [read_file, echo, slow, chatty, ask_llm, client_roots]
denied_tools: [delete_file]
tool_rules:
  - tool: write_file
    action: ask
"""


async def _sampling(
    ctx: Any, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult:
    text = f"llm saw {len(params.messages)} message(s)"
    content = types.TextContent(type="text", text=text)
    return types.CreateMessageResult(role="assistant", content=content, model="test-model")


async def _roots(ctx: Any) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri="file:///work/project")])


class Seen:
    def __init__(self) -> None:
        self.logs: list[Any] = []
        self.progress: list[float] = []


@asynccontextmanager
async def proxied_session(tmp_path: Path, seen: Seen | None = None) -> AsyncIterator[ClientSession]:
    policy = write_policy(tmp_path, SPEC, "e2e")
    cmd = proxy_command()
    params = StdioServerParameters(
        command=cmd[0],
        args=[*cmd[1:], "--policy", str(policy), "--", *MCP_SERVER],
        env=FAST_ENV,
    )
    seen = seen or Seen()

    async def on_log(p: types.LoggingMessageNotificationParams) -> None:
        seen.logs.append(p.data)

    with (tmp_path / "proxy.stderr").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(
                read,
                write,
                sampling_callback=_sampling,
                list_roots_callback=_roots,
                logging_callback=on_log,
            ) as session,
        ):
            with anyio.fail_after(20):
                await session.initialize()
            yield session


def _text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def test_allowed_blocked_and_listed(tmp_path: Path) -> None:
    async with proxied_session(tmp_path) as s:
        with anyio.fail_after(20):
            assert _text(await s.call_tool("read_file", {"path": "/tmp/a"})) == "contents of /tmp/a"
            with pytest.raises(MCPError) as blocked:
                await s.call_tool("delete_file", {"path": "/tmp/a"})
            assert blocked.value.code == -32001
            assert blocked.value.data["reason"] == "denied_tool"
            assert blocked.value.data["tool"] == "delete_file"
            names = {t.name for t in (await s.list_tools()).tools}
    assert "delete_file" not in names
    assert {"read_file", "write_file", "echo"} <= names


async def test_ask_without_approver_is_denied_at_once(tmp_path: Path) -> None:
    async with proxied_session(tmp_path) as s:
        t0 = time.monotonic()
        with anyio.fail_after(20), pytest.raises(MCPError) as denied:
            await s.call_tool("write_file", {"path": "/etc/config.yaml", "content": "x"})
        assert time.monotonic() - t0 < 2
    assert denied.value.code == -32002
    assert denied.value.data["reason"] == "approver_unavailable"


async def test_notifications_and_progress_pass(tmp_path: Path) -> None:
    seen = Seen()
    async with proxied_session(tmp_path, seen) as s:

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.progress.append(progress)

        with anyio.fail_after(20):
            result = await s.call_tool("chatty", {"count": 3}, progress_callback=on_progress)
    assert _text(result) == "sent 3"
    assert seen.logs == ["message 0", "message 1", "message 2"]
    assert seen.progress == [1, 2, 3]


async def test_server_to_client_requests_pass(tmp_path: Path) -> None:
    async with proxied_session(tmp_path) as s:
        with anyio.fail_after(20):
            assert _text(await s.call_tool("ask_llm", {"prompt": "hi"})) == "llm saw 1 message(s)"
            assert _text(await s.call_tool("client_roots", {})) == "file:///work/project"


async def test_ping_while_a_call_is_in_flight(tmp_path: Path) -> None:
    async with proxied_session(tmp_path) as s:
        done: list[str] = []

        async def slow_call() -> None:
            done.append(_text(await s.call_tool("slow", {"seconds": 1.5})))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(slow_call)
                t0 = time.monotonic()
                await s.send_ping()
                assert time.monotonic() - t0 < 1.0
                assert not done  # the ping came back while the slow call was still running
    assert done == ["done"]
