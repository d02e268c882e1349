"""``aipctl config CLIENT``: wire ``aip-proxy`` into an agent client.

Prints the exact snippet for Claude Desktop, Cursor, Claude Code or Codex with absolute paths,
or with ``--rewrite`` wraps every stdio server of an existing config file in place (after a
timestamped backup; idempotent; URL servers and unknown keys untouched).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Final

from aip.approver.ctl import client_config, safe_files
from aip.approver.ctl.client_config import UnsafeRewrite
from aip.approver.ctl.console import err, out, out_json
from aip.approver.ctl.startup_files import installed_program
from aip.proxy.cli import server_name_for
from aip.shared import paths
from aip.shared.errors import PolicyError
from aip.shared.policy.load import load_policy

CLIENTS: Final = ("claude-desktop", "cursor", "claude-code", "codex")


def register(groups: Any, help_line: str) -> None:
    parser = groups.add_parser(
        "config",
        usage="aipctl config CLIENT [options] [--rewrite [CONFIG_FILE]] [-- COMMAND [ARG...]]",
        help=help_line,
        description="Print the snippet that starts COMMAND behind aip-proxy in CLIENT's config, "
        "or rewrite a config file in place (--rewrite) so every stdio server goes through "
        "aip-proxy. Usage: aipctl config CLIENT [options] -- COMMAND [ARG...]. Example: aipctl "
        "config cursor --policy ~/.config/aip/policy.yaml -- npx -y "
        "@modelcontextprotocol/server-filesystem /data",
    )
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument(
        "--policy", help="policy file (default: $AIP_POLICY or ~/.config/aip/policy.yaml)"
    )
    parser.add_argument("--name", help="server name in the client (default: from COMMAND)")
    parser.add_argument("--agent-id", help="passed to aip-proxy as --agent-id")
    parser.add_argument(
        "--approver",
        metavar="ENDPOINT",
        help="approver endpoint written into the entry (default: the one aip-approver uses "
        "when started from this shell's session)",
    )
    parser.add_argument(
        "--rewrite",
        nargs="?",
        const="",
        metavar="CONFIG_FILE",
        help="rewrite this config file in place (default: the client's usual file)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="with --rewrite: print, write nothing"
    )
    parser.add_argument("--json", action="store_true", help="claude-code: print .mcp.json instead")
    parser.set_defaults(func=run, takes_command=True)


def default_config_path(client: str) -> Path:
    home = Path.home()
    if client == "claude-desktop":
        if sys.platform == "darwin":
            return (
                home / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
            )
        if os.name == "nt":
            return Path(os.environ.get("APPDATA", home)) / "Claude" / "claude_desktop_config.json"
        return home / ".config" / "Claude" / "claude_desktop_config.json"
    if client == "cursor":
        return home / ".cursor" / "mcp.json"
    if client == "claude-code":
        return home / ".claude.json"
    return Path(os.environ.get("CODEX_HOME", home / ".codex")) / "config.toml"


def policy_path(given: str | None) -> Path:
    """Absolute: the client may start the proxy in any directory."""
    return (Path(given) if given else paths.default_policy()).expanduser().resolve()


def _note_policy_problems(policy: Path) -> None:
    """The proxy refuses to start without a valid policy: say so now, not at the first call."""
    if not policy.is_file():
        err(f"note: {policy} does not exist yet; write it and check it with `aipctl policy check`.")
        return
    try:
        load_policy(policy)
    except PolicyError as exc:
        err(f"note: aip-proxy would refuse {policy}: {exc.problems[0].render(exc.source)}")
        err(f"      see every problem with: aipctl policy check {shlex.quote(str(policy))}")


def _wrapper(args: argparse.Namespace, policy: Path) -> client_config.Wrapper:
    # Absolute, from this installation: GUI clients start servers with a minimal PATH.
    proxy = installed_program("aip-proxy", "aip.proxy")
    # Pinned: MCP clients start servers with a minimal environment (the MCP SDKs pass on only
    # HOME, LOGNAME, PATH, SHELL, TERM and USER), so without it a proxy would look for the
    # approver under /tmp/aip-$UID instead of $XDG_RUNTIME_DIR (macOS: $TMPDIR) and deny every
    # ask as approver_unavailable.
    endpoint = args.approver or paths.default_endpoint()

    def wrap(name: str, command: list[str]) -> tuple[str, list[str]]:
        extra = ["--agent-id", args.agent_id] if args.agent_id else []
        rest = [
            *proxy[1:],
            "--policy",
            str(policy),
            "--approver",
            endpoint,
            "--server-name",
            name,
            *extra,
            "--",
            *command,
        ]
        return proxy[0], rest

    return wrap


def run(args: argparse.Namespace) -> int:
    command: list[str] = args.command
    policy = policy_path(args.policy)
    _note_policy_problems(policy)
    if args.rewrite is None and not command:
        err("give the server's command after --, or --rewrite CONFIG_FILE to wrap a whole config.")
        return 2
    if command:
        resolved = shutil.which(command[0])
        if resolved is None:
            err(f"note: {command[0]} is not on PATH here; the client must be able to find it.")
        else:  # absolute: GUI clients start servers with a minimal PATH
            command = [str(Path(resolved).absolute()), *command[1:]]
    name = args.name or (server_name_for(command) if command else "")
    wrap = _wrapper(args, policy)
    if args.rewrite is not None:
        target = (
            Path(args.rewrite).expanduser() if args.rewrite else default_config_path(args.client)
        )
        return _rewrite(args.client, target, wrap, name, command, args.dry_run)
    _print_snippet(args.client, name, *wrap(name, command), as_json=args.json)
    where = shlex.quote(str(default_config_path(args.client)))
    first = "Run it" if args.client == "claude-code" and not args.json else f"Add this to {where}"
    err(f"{first} (merged with what is there), or let aipctl add it and wrap")
    err("every other stdio server of that file:")
    err(
        f"  aipctl config {args.client} --policy {shlex.quote(str(policy))} --rewrite {where} "
        f"-- {shlex.join(command)}"
    )
    return 0


def _print_snippet(client: str, name: str, command: str, argv: list[str], *, as_json: bool) -> None:
    if client == "codex":
        out(client_config.toml_server(name, command, argv).rstrip("\n"))
    elif client == "claude-code" and not as_json:
        out(shlex.join(["claude", "mcp", "add", "--scope", "user", name, "--", command, *argv]))
        err("(for a project's .mcp.json instead: the same aipctl command with --json)")
    else:
        entry: dict[str, Any] = {"command": command, "args": argv}
        if client == "claude-code":
            entry = {"type": "stdio", **entry, "env": {}}
        out_json({"mcpServers": {name: entry}})


def _rewrite(
    client: str,
    target: Path,
    wrap: client_config.Wrapper,
    name: str,
    command: list[str],
    dry_run: bool,
) -> int:
    path = target.resolve()  # a symlinked config: edit the file it points to, keep the link
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        err(f"cannot read {target}: {exc}")
        return 1
    try:
        if client == "codex":
            add_toml = {name: wrap(name, command)} if command else None
            new_text, changes = client_config.rewrite_toml(text, wrap, add_toml)
        else:
            new_cmd, new_args = wrap(name, command) if command else ("", [])
            add_json = {name: {"command": new_cmd, "args": new_args}} if command else None
            new_text, changes = client_config.rewrite_json(text, wrap, add_json)
    except UnsafeRewrite as exc:
        err(f"{target}: not rewritten: {exc}")
        err(
            "Nothing was changed. Wrap the servers by hand: "
            f"`aipctl config {client} -- COMMAND...` prints each entry."
        )
        return 1
    for change in changes:
        where = f" ({change.where})" if change.where else ""
        out(f"{change.name}{where}: {change.status}")
    if new_text == text or not any(c.status in ("wrapped", "re-wrapped", "added") for c in changes):
        out(f"{target}: nothing to change")
        return 0
    if dry_run:
        out(f"# would write {target}:")
        out(new_text.rstrip("\n"))
        return 0
    try:
        backup = safe_files.backup_copy(path) if path.exists() else None
        safe_files.atomic_replace(path, new_text.encode())
    except OSError as exc:
        err(f"{target}: not rewritten: {exc}")
        return 1
    out(f"rewrote {target}" + (f" (backup: {backup})" if backup else ""))
    if client == "claude-code" and path.name == ".claude.json":
        err("Running Claude Code sessions rewrite this file: quit them all, then start again.")
    else:
        err("Restart the client so it starts the servers through aip-proxy.")
    return 0
