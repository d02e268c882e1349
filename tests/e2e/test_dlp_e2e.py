"""End to end, DLP (DESIGN §8, issue 5): the official ``mcp`` client calls a real MCP server
that leaks a fake AWS key, through the installed ``aip-proxy``. The key never reaches the
client, the proxy's stderr, the approver's dialog program or the central audit log; media
and other fields pass untouched; an over-size response is an error, never relayed unscanned."""

from __future__ import annotations

import json
import os
import sys
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

from tests.support.approverproc import Approver, answer_program, wait_for  # noqa: E402
from tests.support.proxyproc import FAST_ENV, proxy_command, write_policy  # noqa: E402
from tests.support.secret_server import AWS_KEY, PNG_B64  # noqa: E402

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

SECRET_SERVER = [sys.executable, str(ROOT / "tests" / "support" / "secret_server.py")]
MARK = "[REDACTED:aws-access-key]"
TOOLS = (
    "[leak_text, leak_structured, leak_split, media, big, echo, leak_log, fail, fail_rpc, shout]"
)


def spec(dlp: str, extra: str = "") -> str:
    return f"allowed_tools: {TOOLS}\n{extra}dlp:\n" + "".join(
        f"  {line}\n" for line in dlp.strip().splitlines()
    )


RESPONSES = spec("enabled: true\nbuiltin: true\nfilter_stderr: true\nmax_scan_size: 64KB")


@asynccontextmanager
async def proxied(
    folder: Path,
    policy_spec: str,
    *,
    approver: str | None = None,
    logs: list[Any] | None = None,
) -> AsyncIterator[ClientSession]:
    policy = write_policy(folder, policy_spec, "dlp")
    cmd = proxy_command()
    extra = ["--approver", approver] if approver else []
    params = StdioServerParameters(
        command=cmd[0],
        args=[*cmd[1:], "--policy", str(policy), *extra, "--", *SECRET_SERVER],
        env={**FAST_ENV, "AIP_AGENT_ID": "agent-dlp"},
    )

    async def on_log(p: types.LoggingMessageNotificationParams) -> None:
        if logs is not None:
            logs.append(p.data)

    with (folder / "proxy.stderr").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, logging_callback=on_log) as session,  # type: ignore[arg-type]
        ):
            with anyio.fail_after(20):
                await session.initialize()
            yield session


def _texts(result: types.CallToolResult) -> list[str]:
    return [c.text for c in result.content if isinstance(c, types.TextContent)]


def _records(folder: Path) -> list[dict[str, Any]]:
    lines = (folder / "proxy.stderr").read_text().splitlines()
    return [json.loads(x) for x in lines if x.startswith("{")]


async def test_text_structured_and_split_secrets_reach_the_client_redacted(folder: Path) -> None:
    async with proxied(folder, RESPONSES) as s:
        with anyio.fail_after(20):
            text = await s.call_tool("leak_text")
            structured = await s.call_tool("leak_structured")
            split = await s.call_tool("leak_split")
    assert _texts(text) == [f"your key is {MARK}, keep it safe"]
    assert structured.structured_content == {
        "user": "alice",
        "credentials": {"aws_access_key_id": MARK},
    }
    assert _texts(structured) == ["see structured content"]
    parts = _texts(split)
    assert len(parts) == 2
    assert all(MARK in p for p in parts), parts
    joined = "".join(parts)
    assert AWS_KEY not in joined
    assert AWS_KEY[:8] not in joined
    assert AWS_KEY[-8:] not in joined
    assert parts[0].startswith("part one ")
    assert parts[1].endswith(" part two")
    assert AWS_KEY not in (folder / "proxy.stderr").read_text()


async def test_images_and_resources_pass_untouched(folder: Path) -> None:
    async with proxied(folder, RESPONSES) as s:
        with anyio.fail_after(20):
            result = await s.call_tool("media")
    text, image, blob, notes = result.content
    assert isinstance(text, types.TextContent)
    assert text.text.endswith(MARK)
    assert isinstance(image, types.ImageContent)
    assert (image.data, image.mime_type) == (PNG_B64, "image/png")
    assert isinstance(blob, types.EmbeddedResource)
    assert isinstance(blob.resource, types.BlobResourceContents)
    assert (blob.resource.blob, str(blob.resource.uri)) == (PNG_B64, "file:///pixel.png")
    assert isinstance(notes, types.EmbeddedResource)
    assert isinstance(notes.resource, types.TextResourceContents)
    assert notes.resource.text == "plain notes"


async def test_notifications_and_errors_are_redacted(folder: Path) -> None:
    logs: list[Any] = []
    async with proxied(folder, RESPONSES, logs=logs) as s:
        with anyio.fail_after(20):
            assert _texts(await s.call_tool("leak_log")) == ["logged"]
            failed = await s.call_tool("fail")
            with pytest.raises(MCPError) as err:
                await s.call_tool("fail_rpc")
    assert (err.value.code, err.value.message) == (-32000, f"cannot use {MARK}")
    assert err.value.data == {"key": MARK}
    assert logs == [f"debug: using {MARK}"]
    assert failed.is_error
    assert AWS_KEY not in json.dumps(failed.model_dump(mode="json"))
    assert any(MARK in t for t in _texts(failed))


async def test_server_stderr_is_redacted_even_when_split_across_writes(folder: Path) -> None:
    async with proxied(folder, RESPONSES) as s:
        with anyio.fail_after(20):
            assert _texts(await s.call_tool("shout")) == ["shouted"]
    # The proxy has exited (the client closed it): its stderr pump flushed at the end.
    log = (folder / "proxy.stderr").read_text()
    assert f"stderr key: {MARK} (end)" in log
    assert AWS_KEY not in log
    assert AWS_KEY[:10] not in log


async def test_stderr_filter_works_with_response_scanning_off(folder: Path) -> None:
    policy = spec(
        "enabled: false\nfilter_stderr: true\n"
        "patterns:\n  - {name: akia, regex: 'AKIA[A-Z0-9]{16}'}"
    )
    async with proxied(folder, policy) as s:
        with anyio.fail_after(20):
            assert _texts(await s.call_tool("shout")) == ["shouted"]
            leaked = await s.call_tool("leak_text")  # enabled: false -> responses unscanned
    assert AWS_KEY in _texts(leaked)[0]
    log = (folder / "proxy.stderr").read_text()
    assert "stderr key: [REDACTED:akia] (end)" in log
    assert AWS_KEY not in log


async def test_oversized_response_is_an_error_never_relayed_unscanned(folder: Path) -> None:
    async with proxied(folder, RESPONSES) as s:
        with anyio.fail_after(20):
            with pytest.raises(MCPError) as err:
                await s.call_tool("big", {"size": 100_000})
            small = await s.call_tool("big", {"size": 10})  # the session goes on
    assert err.value.code == -32603
    assert err.value.data["reason"] == "internal_error"
    assert err.value.data["detail"] == f"response over max_scan_size ({64 * 1024} bytes)"
    assert _texts(small) == ["x" * 10]
    internal = [r for r in _records(folder) if r.get("outcome") == "internal_error"]
    assert len(internal) == 1
    assert internal[0]["tool"] == "big"


@pytest.mark.parametrize("mode", ["block", "redact", "warn"])
async def test_scan_requests_modes(folder: Path, mode: str) -> None:
    dlp = f"enabled: true\nbuiltin: true\nscan_requests: true\non_request_match: {mode}"
    async with proxied(folder, spec(dlp)) as s:
        with anyio.fail_after(20):
            clean = await s.call_tool("echo", {"text": "nothing secret"})
            if mode == "block":
                with pytest.raises(MCPError) as err:
                    await s.call_tool("echo", {"text": f"exfiltrate {AWS_KEY}"})
            else:
                result = await s.call_tool("echo", {"text": f"exfiltrate {AWS_KEY}"})
    assert _texts(clean) == ["nothing secret"]
    if mode == "block":
        assert err.value.code == -32001
        assert err.value.data["reason"] == "dlp"
        assert err.value.data["tool"] == "echo"
    else:
        # redact: the server got the marker; warn: it got the key, and the response scan
        # redacted its echo on the way back.
        assert _texts(result) == [f"exfiltrate {MARK}"]
    decisions = [r for r in _records(folder) if r["event"] == "decision"]
    record = [r for r in decisions if r.get("tool") == "echo"][-1]
    assert record["dlp"] == ["aws-access-key:1"]
    assert record["arguments"] == {"text": f"exfiltrate {MARK}"}
    assert record["outcome"] == ("dlp" if mode == "block" else "policy_allowed")
    assert AWS_KEY not in (folder / "proxy.stderr").read_text()


async def test_central_audit_log_and_dialog_never_hold_the_secret(folder: Path) -> None:
    """A real approver with an exec: answer program; policy outcomes and an answered ask."""
    seen = folder / "dialog-requests.jsonl"
    approver = Approver(
        folder,
        f"exec:{answer_program(folder, 'allow')}",
        env={**os.environ, "AIP_TEST_RECORD": str(seen)},
    ).wait_ready()
    try:
        # No dlp block at all: ask and audit payloads are redacted all the same.
        policy = f"allowed_tools: {TOOLS}\ntool_rules:\n  - tool: write_file\n    action: ask\n"
        async with proxied(folder, policy, approver=approver.endpoint) as s:
            with anyio.fail_after(20):
                allowed = await s.call_tool("echo", {"text": f"key {AWS_KEY}"})
                with pytest.raises(MCPError) as denied:
                    await s.call_tool("delete_all", {"token": AWS_KEY})
                asked = await s.call_tool("write_file", {"path": "/tmp/x", "content": AWS_KEY})
        assert _texts(allowed) == [f"key {AWS_KEY}"]  # responses unscanned without dlp
        assert denied.value.data["reason"] == "not_allowed"
        assert asked.is_error  # the server has no write_file; the ask was allowed

        def logged() -> bool:
            tools = {r.get("tool") for r in approver.decisions()}
            return {"echo", "delete_all", "write_file"} <= tools

        wait_for(logged, 10, "the three decisions in the central audit log")
    finally:
        approver.stop()
    log = approver.audit_path.read_text()
    assert AWS_KEY not in log
    assert AWS_KEY[:10] not in log
    by_tool = {r["tool"]: r for r in approver.decisions()}
    assert by_tool["echo"]["arguments"] == {"text": f"key {MARK}"}
    assert by_tool["echo"]["dlp"] == ["aws-access-key:1"]
    assert by_tool["delete_all"]["arguments"] == {"token": MARK}
    assert by_tool["write_file"]["arguments"]["content"] == MARK
    assert by_tool["write_file"]["reason"] == "human approved"
    dialog = seen.read_text()
    assert "write_file" in dialog
    assert MARK in dialog
    assert AWS_KEY not in dialog
    assert AWS_KEY not in (folder / "proxy.stderr").read_text()
