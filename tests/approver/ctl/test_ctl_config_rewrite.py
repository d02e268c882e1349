"""Properties of the config rewriters: a result is exactly the input with stdio servers wrapped,
a second pass changes nothing, and a file that cannot be edited with certainty is refused."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.approver.ctl.client_config import (
    UnsafeRewrite,
    is_wrapped,
    rewrite_json,
    rewrite_toml,
    toml_key,
    toml_string,
)

PROXY = "/opt/aip/bin/aip-proxy"


def wrap(name: str, command: list[str]) -> tuple[str, list[str]]:
    return PROXY, ["--policy", "/p.yaml", "--server-name", name, "--", *command]


text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
names = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=10)
stdio = st.fixed_dictionaries(
    {"command": text.filter(bool), "args": st.lists(text, max_size=4)},
    optional={"env": st.dictionaries(names, text, max_size=2), "cwd": text},
)
remote = st.fixed_dictionaries({"url": text})
servers = st.dictionaries(names, st.one_of(stdio, remote), max_size=4)


def expected(servers: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, entry in servers.items():
        if "command" in entry and not is_wrapped(entry["command"], entry.get("args", [])):
            command, args = wrap(name, [entry["command"], *entry.get("args", [])])
            entry = {**entry, "command": command, "args": args}
        out[name] = entry
    return out


@settings(max_examples=60, deadline=None)
@given(servers=servers, extra=st.dictionaries(names, text, max_size=2))
def test_json_rewrite_is_exact_and_idempotent(
    servers: dict[str, Any], extra: dict[str, Any]
) -> None:
    extra.pop("mcpServers", None)
    extra.pop("projects", None)
    original = {**extra, "mcpServers": servers}
    once, _ = rewrite_json(json.dumps(original), wrap)
    assert json.loads(once) == {**extra, "mcpServers": expected(servers)}
    twice, changes = rewrite_json(once, wrap)
    assert twice == once
    assert all(c.status in ("already wrapped", "not stdio") for c in changes)


def toml_document(servers: dict[str, Any]) -> str:
    """Written the way people write it: one [mcp_servers.NAME] table each, env as a subtable."""
    parts = ['model = "o4"\n']
    for name, entry in servers.items():
        parts.append(f"\n[mcp_servers.{toml_key(name)}]  # a comment\n")
        for key, value in entry.items():
            if key == "env":
                continue
            if isinstance(value, list):
                items = ",\n  ".join(toml_string(v) for v in value)
                parts.append(f"{key} = [\n  {items}\n]\n")
            else:
                parts.append(f"{key} = {toml_string(value)}\n")
        if "env" in entry:
            parts.append(f"\n[mcp_servers.{toml_key(name)}.env]\n")
            parts += [f"{toml_key(k)} = {toml_string(v)}\n" for k, v in entry["env"].items()]
    return "".join(parts)


@settings(max_examples=60, deadline=None)
@given(servers=servers)
def test_toml_rewrite_is_exact_idempotent_or_refused(servers: dict[str, Any]) -> None:
    document = toml_document(servers)
    assert tomllib.loads(document).get("mcp_servers", {}) == servers
    try:
        once, _ = rewrite_toml(document, wrap)
    except UnsafeRewrite:
        return  # refused: the caller leaves the file untouched
    data = tomllib.loads(once)
    assert data.get("mcp_servers", {}) == expected(servers)
    assert data["model"] == "o4"
    twice, _ = rewrite_toml(once, wrap)
    assert twice == once


def test_toml_with_a_server_outside_its_own_table_is_refused() -> None:
    dotted = '[mcp_servers]\ndocs.command = "npx"\n'
    with pytest.raises(UnsafeRewrite, match=r"own \[mcp_servers\.docs\] table"):
        rewrite_toml(dotted, wrap)


def test_servers_behind_a_proxy_are_left_alone() -> None:
    config = {
        "mcpServers": {
            "go": {
                "command": "/usr/local/bin/aip",
                "args": ["--policy", "/etc/p", "--target", "x"],
            },
            "py": {"command": "/usr/bin/python3", "args": ["-m", "aip.proxy", "--", "x"]},
            "ours": {"command": "/opt/aip/bin/aip-proxy", "args": ["--", "x"]},
        }
    }
    text, changes = rewrite_json(json.dumps(config), wrap)
    assert json.loads(text) == config
    assert {c.status for c in changes} == {"already wrapped"}
