"""``aipctl policy check FILE --server CMD`` against the real ``server-everything`` from npm:
which advertised capabilities and tools the policy would block, and the one line that
allows the blocked methods."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.aipctl import aipctl
from tests.support.npm_servers import npm_server

pytestmark = pytest.mark.e2e
HEAD = "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata: {name: t}\nspec:\n"


def check(policy: Path, server: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return aipctl("policy", "check", str(policy), "--server", server, *extra, timeout_s=60)


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(HEAD + body)
    path.chmod(0o600)
    return path


def test_default_methods_block_resources_prompts_and_logging(tmp_path: Path) -> None:
    server = shlex.join(npm_server("everything"))
    policy = write(
        tmp_path, "  allowed_tools: [echo]\n  tool_rules:\n    - {tool: add, action: ask}\n"
    )
    done = check(policy, server, "--json")
    assert done.returncode == 0, done.stderr
    offer = json.loads(done.stdout)[0]["server"]
    caps = offer["capabilities"]
    assert caps["resources"]["blocked"] == caps["resources"]["methods"]
    assert caps["prompts"]["blocked"] == ["prompts/list", "prompts/get"]
    assert caps["logging"]["blocked"] == ["logging/setLevel"]
    assert caps["tools"]["blocked"] == []
    tools = {t["name"]: t for t in offer["tools"]}
    assert tools["echo"]["listed"] is True
    assert tools["get-env"]["listed"] is False

    human = check(policy, server)
    assert "resources   BLOCKED" in human.stdout
    assert "tool get-env: hidden from tools/list" in human.stdout

    # The printed line, pasted into the spec, lets every advertised method through.
    opened = write(tmp_path, "  allowed_tools: [echo]\n  " + offer["allow_line"] + "\n")
    again = json.loads(check(opened, server, "--json").stdout)[0]["server"]
    assert all(not cap["blocked"] for cap in again["capabilities"].values())


def test_a_server_that_cannot_be_asked_is_a_clear_error(tmp_path: Path) -> None:
    policy = write(tmp_path, "  allowed_tools: [echo]\n")
    missing = check(policy, str(tmp_path / "no-such-server"))
    assert missing.returncode == 1
    assert "cannot start" in missing.stderr
    silent_server = f"{sys.executable} -c 'import sys; sys.stdin.read()'"
    silent = check(policy, silent_server, "--json", "--server-timeout", "1")
    assert silent.returncode == 1
    assert "did not answer" in silent.stderr or "exited" in silent.stderr
