"""An MCP server built with the official ``mcp`` package (MCPServer, formerly FastMCP), for
end-to-end tests: file-like tools, a slow tool, and tools that make the server talk to the
client (log notifications, progress, sampling and roots requests)."""

from __future__ import annotations

import asyncio
import warnings

from mcp.server.mcpserver import Context, MCPServer

warnings.simplefilter("ignore")  # sampling/roots are deprecated in the newest protocol
mcp = MCPServer("aip-test-server")


@mcp.tool()
def read_file(path: str) -> str:
    return f"contents of {path}"


@mcp.tool()
def write_file(path: str, content: str) -> str:
    return f"wrote {len(content)} bytes to {path}"


@mcp.tool()
def delete_file(path: str) -> str:
    return f"deleted {path}"


@mcp.tool()
def echo(text: str) -> str:
    return text


@mcp.tool()
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


@mcp.tool()
async def chatty(count: int, ctx: Context) -> str:
    for i in range(count):
        await ctx.log("info", f"message {i}")
        await ctx.report_progress(i + 1, count)
    return f"sent {count}"


@mcp.tool()
async def ask_llm(prompt: str, ctx: Context) -> str:
    from mcp import types

    result = await ctx.session.create_message(
        [types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
        max_tokens=10,
    )
    content = result.content
    return content.text if isinstance(content, types.TextContent) else "?"


@mcp.tool()
async def client_roots(ctx: Context) -> str:
    roots = await ctx.session.list_roots()
    return ",".join(str(r.uri) for r in roots.roots)


if __name__ == "__main__":
    mcp.run("stdio")
