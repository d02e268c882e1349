"""Shared pieces of the DLP message tests: a config builder, message builders, the SDK check."""

from __future__ import annotations

import base64
from typing import Any

import mcp.types
import orjson

from aip.shared.policy.model import DlpConfig, DlpPattern
from aip.shared.policy.regexes import compile_pattern

AWS = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_MARK = "[REDACTED:aws-access-key]"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8).decode()


def cfg(*patterns: tuple[str, str], builtin: bool = True, **kw: Any) -> DlpConfig:
    pats = tuple(DlpPattern(n, p, compile_pattern(p)) for n, p in patterns)
    return DlpConfig(enabled=True, patterns=pats, builtin=builtin, **kw)


def result(*content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "result": {"content": list(content), **extra}}


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def assert_valid_call_result(line: bytes) -> dict[str, Any]:
    """The line is a JSON-RPC response the MCP SDK accepts, carrying a CallToolResult."""
    msg = mcp.types.jsonrpc_message_adapter.validate_json(line)
    assert isinstance(msg, mcp.types.JSONRPCResponse)
    mcp.types.CallToolResult.model_validate(msg.result)
    decoded: dict[str, Any] = orjson.loads(line)
    return decoded
