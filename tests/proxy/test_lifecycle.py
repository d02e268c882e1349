"""The MCP lifecycle passes the proxy as it passes a direct pipe (issue 12 item 11): the real
``mcp`` client in auto mode probes ``server/discover`` and negotiates the same protocol version
direct and through the proxy, with the default method list."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

version_mod = pytest.importorskip("mcp.types.version", reason="an mcp SDK before MCP 2026-07-28")
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

from tests.support.proxyproc import FAST_ENV, MCP_SERVER, proxy_command, write_policy  # noqa: E402

SPEC = "allowed_tools: [read_file]\n"


async def _negotiate(params: StdioServerParameters) -> tuple[str, str]:
    with anyio.fail_after(30):
        async with Client(params, mode="auto") as client:
            result = await client.call_tool("read_file", {"path": "/tmp/x"})
            text = result.content[0].text  # type: ignore[union-attr]
            return client.protocol_version, text


async def test_auto_mode_negotiates_the_same_version_direct_and_proxied(tmp_path: Path) -> None:
    direct = StdioServerParameters(command=MCP_SERVER[0], args=MCP_SERVER[1:], env={})
    cmd = proxy_command()
    policy = write_policy(tmp_path, SPEC)
    proxied = StdioServerParameters(
        command=cmd[0],
        args=[*cmd[1:], "--policy", str(policy), "--", *MCP_SERVER],
        env=dict(FAST_ENV),
    )
    version, text = await _negotiate(direct)
    assert (
        version == version_mod.LATEST_MODERN_VERSION
    )  # the installed SDK speaks the 2026 protocol
    assert await _negotiate(proxied) == (version, text)
