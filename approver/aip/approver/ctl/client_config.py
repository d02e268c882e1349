"""Wrap the stdio MCP servers of an agent client's config file in ``aip-proxy``: text in, text out.

JSON configs (Claude Desktop, Cursor, Claude Code) are parsed and re-serialized with every
unknown key kept. Codex's TOML is edited line by line (no TOML writer in the stdlib) and the
result must parse back to exactly the expected data, else nothing is written.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

# Builds the wrapped (command, args) for a server name and its original command line.
Wrapper = Callable[[str, list[str]], tuple[str, list[str]]]


class UnsafeRewrite(ValueError):
    """The file cannot be rewritten with certainty; it must be left exactly as it is."""


@dataclass(frozen=True, slots=True)
class ServerChange:
    name: str
    status: str  # wrapped | already wrapped | not stdio | no command
    where: str = ""  # "" top level, else e.g. "projects./home/me/repo"


def is_wrapped(command: str, args: list[str]) -> bool:
    """Ours (script or ``python -m aip.proxy``), or the Go reference's ``aip --target``: a
    second policy proxy in front of one would only double every question."""
    name = PurePath(command).name
    if sys.platform in ("win32", "darwin"):  # case-insensitive file systems by default
        name = name.lower()
    if name in ("aip", "aip.exe") and "--target" in args:
        return True
    return name in ("aip-proxy", "aip-proxy.exe") or args[:2] == ["-m", "aip.proxy"]


def _wrap_entry(name: str, entry: Any, wrap: Wrapper) -> tuple[str, dict[str, Any] | None]:
    """The new entry (None: leave it) and what happened to it."""
    if not isinstance(entry, dict):
        return "no command", None
    if "url" in entry or entry.get("type") in ("sse", "http", "streamable-http", "streamableHttp"):
        return "not stdio", None
    command, args = entry.get("command"), entry.get("args", [])
    if not isinstance(command, str) or not command:
        return "no command", None
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise UnsafeRewrite(f"server {name!r}: args is not a list of strings")
    if is_wrapped(command, args):
        return "already wrapped", None
    new_command, new_args = wrap(name, [command, *args])
    # Rebuilt key by key so every other key keeps its value and its place.
    rebuilt = dict(entry)
    rebuilt["command"] = new_command
    rebuilt["args"] = new_args
    return "wrapped", rebuilt


def _wrap_servers(servers: Any, wrap: Wrapper, where: str) -> list[ServerChange]:
    if not isinstance(servers, dict):
        return []
    changes = []
    for name in list(servers):
        status, new = _wrap_entry(name, servers[name], wrap)
        if new is not None:
            servers[name] = new
        changes.append(ServerChange(name, status, where))
    return changes


def rewrite_json(
    text: str, wrap: Wrapper, add: dict[str, dict[str, Any]] | None = None
) -> tuple[str, list[ServerChange]]:
    """Wrap ``mcpServers`` at the top and in Claude Code's ``projects.*``; add new servers."""
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise UnsafeRewrite(f"not valid JSON (line {exc.lineno}): {exc.msg}") from None
    if not isinstance(data, dict):
        raise UnsafeRewrite("the top level is not a JSON object")
    changes = _wrap_servers(data.get("mcpServers"), wrap, "")
    projects = data.get("projects")
    if isinstance(projects, dict):
        for key, project in projects.items():
            if isinstance(project, dict):
                changes += _wrap_servers(project.get("mcpServers"), wrap, f"projects.{key}")
    for name, entry in (add or {}).items():
        servers = data.setdefault("mcpServers", {})
        if not isinstance(servers, dict) or name in servers:
            raise UnsafeRewrite(f"a server named {name!r} already exists; pick another --name")
        servers[name] = entry
        changes.append(ServerChange(name, "added"))
    indent = _json_indent(text)
    return json.dumps(data, indent=indent, ensure_ascii=False) + "\n", changes


def _json_indent(text: str) -> int | str:
    match = re.search(r"\n([ \t]+)\S", text)
    if match is None:
        return 2
    ws = match.group(1)
    return "\t" if ws.startswith("\t") else len(ws)


# --- TOML (Codex) ---------------------------------------------------------------------------

_HEADER = re.compile(
    r"^\s*\[\s*mcp_servers\s*\.\s*(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[A-Za-z0-9_-]+)\s*\]\s*(#.*)?$"
)
_ANY_HEADER = re.compile(r"^\s*\[")


def toml_string(value: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped, the rest as is."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else toml_string(name)


def toml_server(name: str, command: str, args: list[str]) -> str:
    return (
        f"[mcp_servers.{toml_key(name)}]\n"
        f"command = {toml_string(command)}\n"
        f"args = [{', '.join(toml_string(a) for a in args)}]\n"
    )


def _header_name(line: str) -> str | None:
    match = _HEADER.match(line.rstrip("\r\n"))
    if match is None:
        return None
    key = match.group(1)
    return key if key[0] not in "\"'" else str(tomllib.loads(f"k = {key}")["k"])


def _table_body(lines: list[str], name: str) -> tuple[int, int]:
    for i, line in enumerate(lines):
        if _header_name(line) == name:
            end = next(
                (j for j in range(i + 1, len(lines)) if _ANY_HEADER.match(lines[j])), len(lines)
            )
            return i + 1, end
    raise UnsafeRewrite(f"server {name!r} is not written as its own [mcp_servers.{name}] table")


def _key_span(lines: list[str], start: int, end: int, key: str) -> tuple[int, int] | None:
    """Lines [i, j) holding ``key = value``, the value possibly spanning several lines."""
    pattern = re.compile(rf"^\s*(?:{key}|\"{key}\")\s*=(.*)$", re.DOTALL)
    for i in range(start, end):
        match = pattern.match(lines[i])
        if match is None:
            continue
        value = match.group(1)
        for j in range(i + 1, end + 1):
            try:
                tomllib.loads("v =" + value)
                return i, j
            except tomllib.TOMLDecodeError:
                if j < end:
                    value += lines[j]
        raise UnsafeRewrite(f"cannot find where {key} ends in line {i + 1}")
    return None


def rewrite_toml(
    text: str, wrap: Wrapper, add: dict[str, tuple[str, list[str]]] | None = None
) -> tuple[str, list[ServerChange]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UnsafeRewrite(f"not valid TOML: {exc}") from None
    expected = copy.deepcopy(data)
    servers = data.get("mcp_servers", {})
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    changes = []
    for name in servers if isinstance(servers, dict) else {}:
        status, new = _wrap_entry(name, servers[name], wrap)
        changes.append(ServerChange(name, status))
        if new is None:
            continue
        start, end = _table_body(lines, name)
        spans = [s for s in (_key_span(lines, start, end, k) for k in ("command", "args")) if s]
        insert_at = min((s[0] for s in spans), default=start)
        for i, j in sorted(spans, reverse=True):
            del lines[i:j]
        lines[insert_at:insert_at] = toml_server(name, new["command"], new["args"]).splitlines(
            keepends=True
        )[1:]
        expected["mcp_servers"][name].update(command=new["command"], args=new["args"])
    for name, (command, args) in (add or {}).items():
        if name in expected.get("mcp_servers", {}):
            raise UnsafeRewrite(f"a server named {name!r} already exists; pick another --name")
        lines.append("\n" + toml_server(name, command, args))
        expected.setdefault("mcp_servers", {})[name] = {"command": command, "args": args}
        changes.append(ServerChange(name, "added"))
    result = "".join(lines)
    try:
        same = tomllib.loads(result) == expected
    except tomllib.TOMLDecodeError:
        same = False
    if not same:  # our line edit did not do exactly what we meant: refuse, never corrupt
        raise UnsafeRewrite("this TOML layout is not one aipctl can edit with certainty")
    return result, changes
