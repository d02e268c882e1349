"""``aipctl config``: snippets per client, and in-place rewrites of real config files."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.support.aipctl import aipctl

PROXY = str(Path(sys.executable).parent / "aip-proxy")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    (home / ".config" / "aip").mkdir(parents=True)
    policy = home / ".config" / "aip" / "policy.yaml"
    policy.write_text(
        "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata: {name: t}\n"
        "spec: {allowed_tools: [a]}\n"
    )
    policy.chmod(0o600)
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "PATH": os.environ["PATH"],
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }


def policy(env: dict[str, str]) -> str:
    return str(Path(env["HOME"], ".config", "aip", "policy.yaml"))


def endpoint(env: dict[str, str]) -> str:
    return f"ipc://{env['XDG_RUNTIME_DIR']}/aip/approver.sock"


def expected_args(env: dict[str, str], name: str, *command: str) -> list[str]:
    return [
        "--policy",
        policy(env),
        "--approver",
        endpoint(env),
        "--server-name",
        name,
        "--",
        *command,
    ]


@pytest.mark.parametrize("client", ["claude-desktop", "cursor"])
def test_mcpservers_snippet_has_absolute_paths(env: dict[str, str], client: str) -> None:
    done = aipctl("config", client, "--", "sh", "-c", "exec cat", env=env)
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)["mcpServers"]["sh"]
    assert entry["command"] == PROXY
    assert entry["args"] == expected_args(env, "sh", "/usr/bin/sh", "-c", "exec cat") or entry[
        "args"
    ] == expected_args(env, "sh", "/bin/sh", "-c", "exec cat")
    assert "--rewrite" in done.stderr


def test_server_name_from_npx_package(env: dict[str, str]) -> None:
    done = aipctl(
        "config",
        "cursor",
        "--",
        "npx",
        "-y",
        "@modelcontextprotocol/server-filesystem",
        "/d",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert list(json.loads(done.stdout)["mcpServers"]) == [
        "server-filesystem"
    ]  # as aip-proxy names it


def test_claude_code_command_line_and_mcp_json(env: dict[str, str], tmp_path: Path) -> None:
    pol = tmp_path / "p.yaml"
    line = aipctl(
        "config", "claude-code", "--policy", str(pol), "--name", "fs", "--", "true", env=env
    )
    assert line.returncode == 0, line.stderr
    words = shlex.split(line.stdout)
    assert words[:7] == ["claude", "mcp", "add", "--scope", "user", "fs", "--"]
    assert words[7] == PROXY
    assert words[8:14] == ["--policy", str(pol), "--approver", endpoint(env), "--server-name", "fs"]
    assert "does not exist yet" in line.stderr
    mcp = aipctl("config", "claude-code", "--json", "--name", "fs", "--", "true", env=env)
    entry = json.loads(mcp.stdout)["mcpServers"]["fs"]
    assert entry["type"] == "stdio"
    assert entry["command"] == PROXY


def test_codex_snippet_is_valid_toml(env: dict[str, str]) -> None:
    done = aipctl("config", "codex", "--name", 'we"ird name', "--", "echo", 'a"b\\c', env=env)
    assert done.returncode == 0, done.stderr
    server = tomllib.loads(done.stdout)["mcp_servers"]['we"ird name']
    assert server["command"] == PROXY
    assert server["args"][-2:] == [server["args"][-2], 'a"b\\c']


def test_command_is_required_without_rewrite(env: dict[str, str]) -> None:
    assert aipctl("config", "cursor", env=env).returncode == 2


CLAUDE_DESKTOP: dict[str, Any] = {
    "globalShortcut": "Ctrl+Space",
    "mcpServers": {
        "filesystem": {
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-filesystem", "/data"],
            "env": {"DEBUG": "1"},
        },
        "remote": {"url": "https://example.com/mcp", "headers": {"x": "y"}},
        "git": {"command": "uvx", "args": ["mcp-server-git"], "x-unknown": [1, 2]},
    },
}


def test_rewrite_json_wraps_stdio_servers_keeps_the_rest(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(json.dumps(CLAUDE_DESKTOP, indent=4))
    path.chmod(0o640)
    done = aipctl("config", "claude-desktop", "--rewrite", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert "filesystem: wrapped" in done.stdout
    assert "remote: not stdio" in done.stdout
    data = json.loads(path.read_text())
    fs = data["mcpServers"]["filesystem"]
    assert fs["command"] == PROXY
    assert fs["args"] == expected_args(
        env, "filesystem", "npx", "-y", "@modelcontextprotocol/server-filesystem", "/data"
    )
    assert fs["env"] == {"DEBUG": "1"}
    assert data["mcpServers"]["remote"] == CLAUDE_DESKTOP["mcpServers"]["remote"]
    assert data["mcpServers"]["git"]["x-unknown"] == [1, 2]
    assert data["globalShortcut"] == "Ctrl+Space"
    assert path.read_text().startswith('{\n    "globalShortcut"')  # the user's indent kept
    assert path.stat().st_mode & 0o777 == 0o640
    (backup,) = tmp_path.glob("claude_desktop_config.json.aip-backup-*")
    assert json.loads(backup.read_text()) == CLAUDE_DESKTOP

    again = aipctl("config", "claude-desktop", "--rewrite", str(path), env=env)
    assert again.returncode == 0, again.stderr
    assert "filesystem: already wrapped" in again.stdout
    assert "nothing to change" in again.stdout
    assert len(list(tmp_path.glob("*.aip-backup-*"))) == 1  # no change, no new backup


def test_rewrite_claude_code_projects_and_add_a_server(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / ".claude.json"
    path.write_text(
        json.dumps(
            {
                "numStartups": 3,
                "projects": {"/repo": {"mcpServers": {"db": {"type": "stdio", "command": "pg"}}}},
            }
        )
    )
    done = aipctl(
        "config", "claude-code", "--name", "fs", "--rewrite", str(path), "--", "/bin/echo", env=env
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(path.read_text())
    db = data["projects"]["/repo"]["mcpServers"]["db"]
    assert db["type"] == "stdio"
    assert db["args"] == expected_args(env, "db", "pg")
    assert data["mcpServers"]["fs"]["args"] == expected_args(env, "fs", "/bin/echo")
    assert data["numStartups"] == 3


def test_rewrite_refuses_invalid_json_and_leaves_it(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    broken = '{"mcpServers": {"a": {"command": "x",}}}\n'
    path.write_text(broken)
    done = aipctl("config", "cursor", "--rewrite", str(path), env=env)
    assert done.returncode == 1
    assert "not valid JSON" in done.stderr
    assert path.read_text() == broken
    assert not list(tmp_path.glob("*.aip-backup-*"))


def test_rewrite_follows_a_symlink(env: dict[str, str], tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "mcp.json"
    real.parent.mkdir()
    real.write_text('{"mcpServers": {"a": {"command": "x"}}}')
    link = tmp_path / "mcp.json"
    link.symlink_to(real)
    assert aipctl("config", "cursor", "--rewrite", str(link), env=env).returncode == 0
    assert link.is_symlink()
    assert json.loads(real.read_text())["mcpServers"]["a"]["command"] == PROXY


CODEX = """\
# my codex config
model = "o4-mini"

[mcp_servers.docs]
command = "npx"   # the docs server
args = [
  "-y",
  "docs-mcp",  # pinned
]
env = { "API_KEY" = "k" }
startup_timeout_sec = 20

[mcp_servers.remote]
url = "https://example.com/mcp"

[mcp_servers."my server".env]
A = "1"

[mcp_servers."my server"]
command = "/opt/my server/bin/run"

[profiles.fast]
model = "gpt-x"
"""


def test_rewrite_codex_toml(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CODEX)
    done = aipctl("config", "codex", "--rewrite", str(path), env=env)
    assert done.returncode == 0, done.stderr
    text = path.read_text()
    assert text.startswith("# my codex config\n")
    data = tomllib.loads(text)
    before = tomllib.loads(CODEX)
    docs = data["mcp_servers"]["docs"]
    assert docs["command"] == PROXY
    assert docs["args"] == expected_args(env, "docs", "npx", "-y", "docs-mcp")
    assert docs["env"] == {"API_KEY": "k"}
    assert docs["startup_timeout_sec"] == 20
    mine = data["mcp_servers"]["my server"]
    assert mine["args"] == expected_args(env, "my server", "/opt/my server/bin/run")
    assert mine["env"] == {"A": "1"}
    assert data["mcp_servers"]["remote"] == before["mcp_servers"]["remote"]
    assert data["profiles"] == before["profiles"]
    assert data["model"] == "o4-mini"
    again = aipctl("config", "codex", "--rewrite", str(path), env=env)
    assert "nothing to change" in again.stdout
    assert path.read_text() == text


def test_rewrite_codex_refuses_a_layout_it_cannot_edit(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    inline = 'mcp_servers = { docs = { command = "npx", args = ["docs"] } }\n'
    path.write_text(inline)
    done = aipctl("config", "codex", "--rewrite", str(path), env=env)
    assert done.returncode == 1
    assert "not rewritten" in done.stderr
    assert path.read_text() == inline


def test_rewrite_codex_adds_a_server_to_a_new_file(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "codex" / "config.toml"
    done = aipctl(
        "config", "codex", "--rewrite", str(path), "--name", "fs", "--", "/bin/cat", env=env
    )
    assert done.returncode == 0, done.stderr
    server = tomllib.loads(path.read_text())["mcp_servers"]["fs"]
    assert server["args"] == expected_args(env, "fs", "/bin/cat")


def test_rewrite_dry_run_writes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    original = '{"mcpServers": {"a": {"command": "x"}}}'
    path.write_text(original)
    done = aipctl("config", "cursor", "--rewrite", str(path), "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    assert "would write" in done.stdout
    assert path.read_text() == original


def test_invalid_policy_is_noted(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\n")
    bad.chmod(0o600)
    done = aipctl("config", "cursor", "--policy", str(bad), "--", "true", env=env)
    assert done.returncode == 0  # the snippet is still printed
    assert "aip-proxy would refuse" in done.stderr
    assert f"aipctl policy check {bad}" in done.stderr
    good = aipctl("config", "cursor", "--", "true", env=env)
    assert "note:" not in good.stderr


def test_approver_endpoint_is_pinned_for_minimal_client_environments(env: dict[str, str]) -> None:
    """MCP SDK clients pass no XDG_RUNTIME_DIR: the entry must name the approver itself."""
    done = aipctl(
        "config",
        "cursor",
        "--",
        "true",
        env={**env, "AIP_APPROVER_ENDPOINT": "ipc:///tmp/elsewhere.sock"},
    )
    args = json.loads(done.stdout)["mcpServers"]["true"]["args"]
    assert args[args.index("--approver") + 1] == "ipc:///tmp/elsewhere.sock"
    given = aipctl("config", "cursor", "--approver", "ipc:///tmp/x.sock", "--", "true", env=env)
    args = json.loads(given.stdout)["mcpServers"]["true"]["args"]
    assert args[args.index("--approver") + 1] == "ipc:///tmp/x.sock"


def test_rewrite_wraps_what_a_client_would_start_and_keeps_numbers_verbatim(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Hostile or unusual entries (issue 12.2): a stdio server that also has a url is started
    from its command, so it is wrapped; a program merely named aip-proxy with a relative
    --policy is wrapped again around its own server; numbers stay as the file wrote them."""
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(
        "{\n"
        '  "limits": {"huge": 1e400, "neg_zero": -0, "sci": 1.0E2, "big": 18446744073709551616},\n'
        '  "mcpServers": {\n'
        '    "both": {"type": "stdio", "command": "npx", "args": ["srv"], "url": "http://x"},\n'
        '    "remote": {"type": "http", "url": "http://y", "command": "ignored"},\n'
        '    "fake": {"command": "./tools/aip-proxy", "args": ["--policy", "rel.yaml", "--",'
        ' "node", "s.js"]}\n'
        "  }\n"
        "}\n"
    )
    done = aipctl("config", "claude-desktop", "--rewrite", str(path), env=env)
    assert done.returncode == 0, done.stderr
    text = path.read_text()
    for literal in ('"huge": 1e400', '"neg_zero": -0', '"sci": 1.0E2', "18446744073709551616"):
        assert literal in text
    assert "Infinity" not in text
    servers = json.loads(text)["mcpServers"]
    assert servers["both"]["command"] == PROXY
    assert servers["both"]["args"] == expected_args(env, "both", "npx", "srv")
    assert servers["both"]["url"] == "http://x"
    assert servers["remote"]["command"] == "ignored"  # a remote type is never started
    assert servers["fake"]["command"] == PROXY
    assert servers["fake"]["args"] == expected_args(env, "fake", "node", "s.js")
    assert "fake: re-wrapped" in done.stdout


def test_rewrite_backup_never_follows_a_planted_link(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(json.dumps({"mcpServers": {"s": {"command": "npx", "args": ["x"]}}}))
    victims = tmp_path / "victims"
    victims.mkdir()
    now = int(time.time())
    for second in range(now - 1, now + 30):  # every backup name the next half-minute could use
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        link = tmp_path / f"{path.name}.aip-backup-{stamp}"
        link.symlink_to(victims / stamp)  # dangling: exists() says False
    done = aipctl("config", "claude-desktop", "--rewrite", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert list(victims.iterdir()) == []
    (backup,) = [p for p in tmp_path.glob(f"{path.name}.aip-backup-*") if not p.is_symlink()]
    assert json.loads(backup.read_text())["mcpServers"]["s"]["command"] == "npx"
