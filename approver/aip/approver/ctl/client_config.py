"""Wrap the stdio MCP servers of an agent client's config file in ``aip-proxy``: text in, text out.

JSON configs (Claude Desktop, Cursor, Claude Code) are parsed and re-serialized with every
unknown key kept. Codex's TOML is edited line by line (no TOML writer in the stdlib) and the
result must parse back to exactly the expected data, else nothing is written.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import shlex
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


_PROXY_NAMES = ("aip-proxy", "aip-proxy.exe")
_REMOTE_TYPES = ("sse", "http", "streamable-http", "streamableHttp")


def _program_name(command: str) -> str:
    name = PurePath(command).name
    if sys.platform in ("win32", "darwin"):  # case-insensitive file systems by default
        name = name.lower()
    return name


def _looks_like_a_proxy(command: str, args: list[str]) -> bool:
    name = _program_name(command)
    return (
        name in _PROXY_NAMES
        or (name in ("aip", "aip.exe") and "--target" in args)
        or args[:2] == ["-m", "aip.proxy"]
    )


def _option(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


def is_wrapped(command: str, args: list[str]) -> bool:
    """Already behind a policy proxy that will surely be the one started: ours (script or
    ``python -m aip.proxy``) or the Go reference's ``aip --target``, given by absolute path
    and with an absolute ``--policy`` if any. A second proxy in front would only double every
    question. A program merely named ``aip-proxy`` (``./tools/aip-proxy``, or a bare name the
    client's PATH resolves) or a relative ``--policy`` (relative to the client's unknown
    working directory) is not certain: such an entry is wrapped again (``_inner_command``)."""
    if not _looks_like_a_proxy(command, args) or not PurePath(command).is_absolute():
        return False
    policy = _option(args, "--policy")
    return policy is None or PurePath(policy).is_absolute()


def _inner_command(command: str, args: list[str]) -> list[str] | None:
    """The server command line behind a proxy invocation (after ``--``, or ``--target``)."""
    if not _looks_like_a_proxy(command, args):
        return None
    if "--" in args:
        inner = args[args.index("--") + 1 :]
        return inner or None
    target = _option(args, "--target")
    return shlex.split(target) if target else None


def _wrap_entry(name: str, entry: Any, wrap: Wrapper) -> tuple[str, dict[str, Any] | None]:
    """The new entry (None: leave it) and what happened to it."""
    if not isinstance(entry, dict):
        return "no command", None
    kind = entry.get("type")
    if kind in _REMOTE_TYPES:
        return "not stdio", None
    command, args = entry.get("command"), entry.get("args", [])
    if not isinstance(command, str) or not command:
        # A url with no command is a remote server; `"type": "stdio"` with a url as well is
        # still started from its command, so it is wrapped like any stdio server.
        return ("not stdio" if "url" in entry else "no command"), None
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise UnsafeRewrite(f"server {name!r}: args is not a list of strings")
    if is_wrapped(command, args):
        return "already wrapped", None
    inner = _inner_command(command, args)
    new_command, new_args = wrap(name, inner if inner is not None else [command, *args])
    # Rebuilt key by key so every other key keeps its value and its place.
    rebuilt = dict(entry)
    rebuilt["command"] = new_command
    rebuilt["args"] = new_args
    return ("re-wrapped" if inner is not None else "wrapped"), rebuilt


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
    numbers = _VerbatimNumbers(text)
    try:
        data = numbers.loads(text) if text.strip() else {}
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
    return numbers.restore(json.dumps(data, indent=indent, ensure_ascii=False)) + "\n", changes


class _VerbatimNumbers:
    """Numbers come back exactly as the file wrote them. ``json`` would turn a valid ``1e400``
    into ``Infinity`` (which no client can read back), ``1.0e2`` into ``100.0`` and ``-0`` into
    ``0``: each float, constant and non-canonical integer is held as a unique placeholder
    string while the document is edited, then its original text is put back."""

    def __init__(self, text: str) -> None:
        self._nonce = secrets.token_hex(8)
        while self._nonce in text:
            self._nonce = secrets.token_hex(8)
        self._texts: list[str] = []

    def _hold(self, literal: str) -> str:
        self._texts.append(literal)
        return f"aip-number-{self._nonce}-{len(self._texts) - 1}"

    def _int(self, literal: str) -> int | str:
        value = int(literal)
        return value if str(value) == literal else self._hold(literal)

    def loads(self, text: str) -> Any:
        return json.loads(
            text, parse_float=self._hold, parse_int=self._int, parse_constant=self._hold
        )

    def restore(self, dumped: str) -> str:
        if not self._texts:
            return dumped
        pattern = re.compile(rf'"aip-number-{self._nonce}-(\d+)"')
        return pattern.sub(lambda m: self._texts[int(m.group(1))], dumped)


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
