"""``aipctl policy suggest`` on a log made by the real proxy and approver (``exec:`` answers):
it proposes a rule that auto-allows exactly the approved shapes, never a nearby harmful one,
nothing for a tool a human denied once, and ``--apply`` writes a policy that loads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from aip.shared.policy.load import load_policy
from aip.shared.policy.regexes import compile_pattern, full_match
from tests.support.aipctl import aipctl
from tests.support.approverproc import Approver, answer_program
from tests.support.proxyproc import RAW_SERVER, ProxyProcess, write_policy

pytestmark = pytest.mark.e2e
SPEC = """\
  allowed_tools: [read_file]
  tool_rules:
    - tool: write_file
      action: ask
    - tool: delete_file
      action: ask
"""
WRITES = ["a.o", "b.o", "sub/c.o", "d.o", "e.o", "f.o", "sub/deeper/g.o"]


@pytest.fixture
def history(folder: Path) -> tuple[Path, Path]:
    """A policy and the central log of a week of work: approved writes under /tmp/build/,
    delete_file approved three times and denied once."""
    policy = write_policy(folder, SPEC, "suggest-test")
    answer = folder / "answer.txt"
    env = {**os.environ, "AIP_TEST_ANSWER_FILE": str(answer)}
    with Approver(folder, f"exec:{answer_program(folder)}", env=env).wait_ready() as approver:
        for session in range(2):  # two agent sessions
            proxy = ProxyProcess(
                policy, RAW_SERVER, folder, extra_args=["--approver", approver.endpoint]
            )
            try:
                proxy.initialize()
                answer.write_text("allow\n")
                for n, name in enumerate(WRITES[session::2]):
                    reply = proxy.call(
                        n + 1, "write_file", {"path": f"/tmp/build/{name}", "content": "x"}
                    )
                    assert "result" in reply, reply
                for n in range(3 if session == 0 else 0):
                    proxy.call(100 + n, "delete_file", {"path": f"/tmp/old/{n}"})
                if session == 1:
                    answer.write_text("deny\n")
                    reply = proxy.call(200, "delete_file", {"path": "/tmp/old/x"})
                    assert reply["error"]["code"] == -32002
            finally:
                proxy.kill()
        approver.stop()
    return policy, approver.audit_path


def test_suggest_learns_exactly_the_approved_shapes(history: tuple[Path, Path]) -> None:
    policy, log = history
    done = aipctl("policy", "suggest", "--policy", str(policy), "--audit", str(log))
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(done.stdout)
    rules = {s["rule"]["tool"]: s for s in doc["suggestions"]}
    assert set(rules) == {"write_file"}  # nothing for delete_file: a human denied it once
    assert any(s["tool"] == "delete_file" and "denied" in s["reason"] for s in doc["skipped"])
    write = rules["write_file"]
    assert write["rule"]["action"] == "allow"
    assert write["rule"]["strict_args"] is True
    assert write["evidence"]["approvals"] == len(WRITES)
    assert write["insert_before"] == "tool_rules[0]"
    path = compile_pattern(write["rule"]["allow_args"]["path"])
    for name in WRITES:
        assert full_match(path, f"/tmp/build/{name}".encode())
    for harmful in (
        "/etc/passwd",
        "/tmp/build/../../etc/passwd",
        "/tmp/build/./x",
        "/tmp/build/sub/../../../etc",
        "/tmp/buildx/a.o",
        "/tmp/build/",
        "/tmp/build/a.o\n/etc/passwd",
    ):
        assert not full_match(path, harmful.encode()), harmful
    content = compile_pattern(write["rule"]["allow_args"]["content"])
    assert full_match(content, b"x")
    assert not full_match(content, b"y")
    assert write["tests"]["not_match"]["path"] == "/tmp/build/../../etc/passwd"


def test_apply_writes_a_policy_that_loads_and_keeps_a_backup(history: tuple[Path, Path]) -> None:
    policy, log = history
    before = policy.read_text()
    done = aipctl("policy", "suggest", "--policy", str(policy), "--audit", str(log), "--apply")
    assert done.returncode == 0, done.stderr
    assert "policy check: OK" in done.stdout
    assert "write_file approved call: forwarded" in done.stdout, done.stdout
    assert "write_file harmful neighbour: asks a human" in done.stdout  # still the ask rule
    check = aipctl("policy", "check", str(policy), "--json")
    assert check.returncode == 0, check.stdout
    assert json.loads(check.stdout)[0]["valid"] is True
    new = load_policy(policy)
    assert [(r.tool, r.action.value) for r in new.tool_rules] == [
        ("write_file", "allow"),
        ("write_file", "ask"),
        ("delete_file", "ask"),
    ]
    (backup,) = policy.parent.glob(f"{policy.name}.aip-backup-*")
    assert backup.read_text() == before
    assert "# suggested" in policy.read_text()  # the evidence stays next to the rule


def test_without_apply_nothing_changes(history: tuple[Path, Path]) -> None:
    policy, log = history
    before = policy.read_bytes()
    assert aipctl("policy", "suggest", "--policy", str(policy), "--audit", str(log)).returncode == 0
    assert policy.read_bytes() == before
