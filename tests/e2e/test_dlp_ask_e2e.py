"""End to end, DLP and asks (issue 5): the ``ask`` message carries the rules that fired on the
arguments, so the real approver's record of the answered ask says which (``dlp``), like the
proxy's own records; the approver's dialog and log still never hold the secret."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.approverproc import Approver, answer_program, wait_for  # noqa: E402
from tests.support.proxyproc import FAST_ENV, proxy_command, write_policy  # noqa: E402
from tests.support.secret_server import AWS_KEY  # noqa: E402

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

SECRET_SERVER = [sys.executable, str(ROOT / "tests" / "support" / "secret_server.py")]
MARK = "[REDACTED:aws-access-key]"
CARD = "4111 1111 1111 1111"


@asynccontextmanager
async def proxied(folder: Path, policy_spec: str, approver: str) -> AsyncIterator[ClientSession]:
    policy = write_policy(folder, policy_spec, "dlp-ask")
    cmd = proxy_command()
    params = StdioServerParameters(
        command=cmd[0],
        args=[*cmd[1:], "--policy", str(policy), "--approver", approver, "--", *SECRET_SERVER],
        env={**FAST_ENV, "AIP_AGENT_ID": "agent-dlp-ask"},
    )
    with (folder / "proxy.stderr").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            with anyio.fail_after(20):
                await session.initialize()
            yield session


@pytest.mark.parametrize(
    ("dlp_block", "expected"),
    [
        # No dlp block: the display scan (built-ins) of the ask's arguments.
        ("", ["aws-access-key:1", "card-number:1"]),
        # The request scan warns: its own list is the one recorded.
        (
            "dlp:\n  enabled: true\n  builtin: true\n  scan_requests: true\n"
            "  on_request_match: warn\n",
            ["aws-access-key:1", "card-number:1"],
        ),
    ],
)
async def test_answered_ask_records_the_rules_that_fired(
    folder: Path, dlp_block: str, expected: list[str] | None
) -> None:
    approver = Approver(folder, f"exec:{answer_program(folder, 'allow')}").wait_ready()
    try:
        policy = (
            "allowed_tools: [echo]\ntool_rules:\n  - tool: write_file\n    action: ask\n"
            "  - tool: read_file\n    action: ask\n" + dlp_block
        )
        async with proxied(folder, policy, approver.endpoint) as s:
            with anyio.fail_after(20):
                secret = await s.call_tool(
                    "write_file", {"path": "/tmp/x", "content": f"{AWS_KEY} card {CARD}"}
                )
                clean = await s.call_tool("read_file", {"path": "/tmp/x"})
        assert secret.is_error  # the server has no such tools: both asks were allowed
        assert clean.is_error

        def answered() -> bool:
            tools = {r.get("tool") for r in approver.decisions()}
            return {"write_file", "read_file"} <= tools

        wait_for(answered, 10, "both answered asks in the central audit log")
    finally:
        approver.stop()
    by_tool = {r["tool"]: r for r in approver.decisions()}
    asked = by_tool["write_file"]
    assert asked["reason"] == "human approved"
    assert asked["arguments"]["content"] == f"{MARK} card [REDACTED:card-number]"
    proxy_records = [
        r
        for r in _records(folder / "proxy.stderr")
        if r.get("tool") == "write_file" and r.get("reason") == "human approved"
    ]
    assert len(proxy_records) == 1
    # The approver's record and the proxy's own record of the same ask agree.
    assert asked["dlp"] == proxy_records[0]["dlp"]
    assert asked["dlp"] == expected
    assert by_tool["read_file"]["dlp"] == []
    log = approver.audit_path.read_text()
    assert AWS_KEY not in log
    assert CARD not in log


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.startswith("{")]
