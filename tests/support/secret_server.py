"""An ``mcp`` MCPServer (formerly FastMCP) that leaks fake secrets, for the DLP end-to-end tests:
in text content, in structuredContent, split across two text items, in a log notification, in
an error, and on stderr (split across two writes); plus media that must pass untouched."""

from __future__ import annotations

import sys
import warnings

from mcp import types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError

warnings.simplefilter("ignore")
mcp = MCPServer("aip-secret-server")

# Built from pieces so this file itself holds no key-shaped string for scanners.
AWS_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"
# A 1x1 PNG: binary base64 that must survive byte for byte.
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@mcp.tool()
def leak_text() -> str:
    return f"your key is {AWS_KEY}, keep it safe"


@mcp.tool()
def leak_structured() -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text="see structured content")],
        structured_content={"user": "alice", "credentials": {"aws_access_key_id": AWS_KEY}},
    )


@mcp.tool()
def leak_split() -> types.CallToolResult:
    half = len(AWS_KEY) // 2
    return types.CallToolResult(
        content=[
            types.TextContent(type="text", text="part one " + AWS_KEY[:half]),
            types.TextContent(type="text", text=AWS_KEY[half:] + " part two"),
        ]
    )


@mcp.tool()
def media() -> types.CallToolResult:
    return types.CallToolResult(
        content=[
            types.TextContent(type="text", text=f"a picture and a file, and {AWS_KEY}"),
            types.ImageContent(type="image", data=PNG_B64, mime_type="image/png"),
            types.EmbeddedResource(
                type="resource",
                resource=types.BlobResourceContents(
                    uri="file:///pixel.png", mime_type="image/png", blob=PNG_B64
                ),
            ),
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(
                    uri="file:///notes.txt", mime_type="text/plain", text="plain notes"
                ),
            ),
        ]
    )


@mcp.tool()
def big(size: int) -> str:
    return "x" * size


@mcp.tool()
def echo(text: str) -> str:
    return text


@mcp.tool()
async def leak_log(ctx: Context) -> str:
    await ctx.log("info", f"debug: using {AWS_KEY}")
    return "logged"


@mcp.tool()
def fail() -> str:
    raise ToolError(f"cannot use {AWS_KEY}")  # a result with isError


@mcp.tool()
def fail_rpc() -> str:
    raise MCPError(-32000, f"cannot use {AWS_KEY}", {"key": AWS_KEY})  # a JSON-RPC error


@mcp.tool()
def shout() -> str:
    """Print the key on stderr in two writes, cut inside the key."""
    half = len(AWS_KEY) // 2
    sys.stderr.write("stderr key: " + AWS_KEY[:half])
    sys.stderr.flush()
    sys.stderr.write(AWS_KEY[half:] + " (end)\n")
    sys.stderr.flush()
    return "shouted"


if __name__ == "__main__":
    mcp.run("stdio")
