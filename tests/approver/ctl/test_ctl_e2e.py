"""The install guide's path, end to end: a policy in ~/.config/aip, a client config rewritten
by ``aipctl config``, ``aipctl doctor`` on the wrapped command, then the official ``mcp``
client starts exactly that command and a human-approved write goes through."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from tests.support.aipctl import aipctl
from tests.support.approverproc import Approver, answer_program, short_dir
from tests.support.proxyproc import FAST_ENV, MCP_SERVER

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

# The policy of docs/install.md, step 2.
POLICY = """\
apiVersion: aip.io/v1alpha1
kind: AgentPolicy
metadata:
  name: my-desktop
spec:
  mode: enforce
  allowed_tools:
    - read_file
    - list_directory
  tool_rules:
    - tool: write_file
      action: ask        # a dialog asks you first
"""


def _text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def test_from_policy_to_an_approved_call(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".config" / "aip").mkdir(parents=True)
    policy = home / ".config" / "aip" / "policy.yaml"
    policy.write_text(POLICY)
    policy.chmod(0o600)
    config = home / ".config" / "Claude" / "claude_desktop_config.json"
    config.parent.mkdir(parents=True)
    config.write_text(
        json.dumps({"mcpServers": {"files": {"command": MCP_SERVER[0], "args": MCP_SERVER[1:]}}})
    )

    with short_dir() as folder:
        approver = Approver(folder, f"exec:{answer_program(folder, 'allow')}", timeout_s=5)
        with approver:
            approver.wait_ready()
            env = {
                "HOME": str(home),
                "PATH": os.environ["PATH"],
                "LANG": "C.UTF-8",
                "AIP_APPROVER_ENDPOINT": approver.endpoint,
                "AIP_AUDIT_LOG": str(approver.audit_path),
                **FAST_ENV,
            }
            check = aipctl("policy", "check", str(policy), env=env)
            assert check.returncode == 0, check.stdout + check.stderr

            rewrite = aipctl("config", "claude-desktop", "--rewrite", env=env)  # the default file
            assert rewrite.returncode == 0, rewrite.stderr
            entry: dict[str, Any] = json.loads(config.read_text())["mcpServers"]["files"]
            assert entry["args"][:6] == [
                "--policy",
                str(policy),
                "--approver",
                approver.endpoint,
                "--server-name",
                "files",
            ]

            doctor = aipctl("doctor", "--json", "--", entry["command"], *entry["args"], env=env)
            checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
            assert checks["approver"]["status"] == "ok", checks["approver"]
            assert checks["dialog"]["status"] == "ok", checks["dialog"]  # its exec: program
            assert "shows dialogs with" in checks["dialog"]["summary"]
            assert checks["policy"]["status"] == "ok", checks["policy"]
            assert "'my-desktop'" in checks["policy"]["summary"]

            # What an MCP SDK client does with the entry: start it with a minimal environment
            # (HOME, LOGNAME, PATH, SHELL, TERM, USER): no AIP_* and no XDG_RUNTIME_DIR, so
            # the pinned --approver is what finds the approver.
            client_env = {"HOME": str(home), **FAST_ENV}
            params = StdioServerParameters(
                command=entry["command"], args=entry["args"], env=client_env
            )
            with (tmp_path / "proxy.stderr").open("w") as errlog:
                async with (
                    stdio_client(params, errlog=errlog) as (read, write),
                    ClientSession(read, write) as session,
                ):
                    with anyio.fail_after(20):
                        await session.initialize()
                        wrote = await session.call_tool(
                            "write_file", {"path": "/tmp/aip-test.txt", "content": "hello"}
                        )
                        assert _text(wrote) == "wrote 5 bytes to /tmp/aip-test.txt"
                        with pytest.raises(MCPError) as blocked:
                            await session.call_tool("delete_file", {"path": "/tmp/x"})
                        assert blocked.value.code == -32001
            approved = [
                r
                for r in approver.decisions()
                if r["decision"] == "allow" and r["reason"] == "human approved"
            ]
            assert [r["tool"] for r in approved] == ["write_file"]
            assert approved[0]["server"] == "files"

            after = aipctl("doctor", "--json", env=env)
            audit = {c["name"]: c for c in json.loads(after.stdout)["checks"]}["audit log"]
            assert audit["status"] == "ok", audit
            assert "hash chain intact" in audit["summary"]
