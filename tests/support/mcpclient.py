"""The official ``mcp`` client talking to a server through a real ``aip-proxy`` process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.support.proxyproc import FAST_ENV, MCP_SERVER, proxy_command

INITIALIZE_S = 20


@asynccontextmanager
async def proxied_session(
    folder: Path,
    policy: Path,
    endpoint: str,
    *,
    agent_id: str,
    server: Sequence[str] = tuple(MCP_SERVER),
    env: dict[str, str] | None = None,
    proxy: Sequence[str] | None = None,
) -> AsyncIterator[ClientSession]:
    """An initialized client session; the proxy's stderr goes to ``folder/proxy.stderr``.
    ``env`` adds to the client's environment; ``proxy`` replaces the proxy's command."""
    cmd = list(proxy or proxy_command())
    params = StdioServerParameters(
        command=cmd[0],
        args=[*cmd[1:], "--policy", str(policy), "--approver", endpoint, "--", *server],
        env={**FAST_ENV, "AIP_AGENT_ID": agent_id, **(env or {})},
    )
    with (folder / "proxy.stderr").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as s,
        ):
            with anyio.fail_after(INITIALIZE_S):
                await s.initialize()
            yield s


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSON-lines file (none when it does not exist yet)."""
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
