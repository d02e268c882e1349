"""``aipctl policy check|explain`` on real policy files, through the console script."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.aipctl import aipctl

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "policies"

HEAD = "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata:\n  name: t\nspec:\n"


def write(tmp_path: Path, spec: str, mode: int = 0o600) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(HEAD + spec)
    path.chmod(mode)
    return path


def check_json(path: Path | str) -> tuple[int, dict[str, Any]]:
    done = aipctl("policy", "check", "--json", str(path))
    (report,) = json.loads(done.stdout)
    return done.returncode, report


def test_valid_policy(tmp_path: Path) -> None:
    path = write(tmp_path, "  allowed_tools: [read_file]\n")
    done = aipctl("policy", "check", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{path}: OK: policy 't', enforce mode" in done.stdout


def test_every_error_at_once_with_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  mode: enforce\n"
        "  allowed_tools: [read_file]\n"
        "  tool_rules:\n"
        "    - tool: write_file\n"
        "      action: maybe\n"  # line 10
        "    - tool: run\n"
        "      action: allow\n"
        "      allow_args:\n"
        "        cmd: '(?!rm)'\n"  # line 14
        "      rate_limit: lots\n",  # line 15
    )
    rc, report = check_json(path)
    assert rc == 1
    assert report["valid"] is False
    lines = {e["line"] for e in report["errors"]}
    assert {10, 14, 15} <= lines, report["errors"]
    text = aipctl("policy", "check", str(path)).stdout
    assert f"{path}:10:" in text
    assert f"{path}:14:" in text


def test_unsafe_file_mode_is_an_error_beside_content_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "  allowed_tools: [read_file]\n  bogus: 1\n", mode=0o666)
    rc, report = check_json(path)
    assert rc == 1
    messages = " ".join(e["message"] for e in report["errors"])
    assert "world-writable" in messages
    assert "bogus" in json.dumps(report["errors"])


def test_missing_file(tmp_path: Path) -> None:
    rc, report = check_json(tmp_path / "nope.yaml")
    assert rc == 1
    assert "not found" in report["errors"][0]["message"]


def test_stdin() -> None:
    done = aipctl("policy", "check", "-", stdin=HEAD + "  allowed_tools: [a]\n")
    assert done.returncode == 0, done.stdout + done.stderr


WARNINGS = """\
  allowed_tools: [read_file, write_file, exec]
  denied_tools: [exec]
  tool_rules:
    - tool: read_file
      action: allow
      allow_args:
        path: ".*"
    - tool: write_file
      action: allow
      allow_args:
        path: "^/tmp/.*$"
    - tool: write_file
      action: ask
      allow_args:
        path: "^/tmp/.*$"
        content: "^.{0,100}$"
    - tool: exec
      action: ask
    - tool: query_db
      action: allow
      allow_args:
        query: "^SELECT .*$"
"""


def test_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, WARNINGS)
    rc, report = check_json(path)
    assert rc == 0  # warnings alone do not fail
    codes = {(w["code"], w["line"]) for w in report["warnings"]}
    assert ("matches-everything", 9) in codes
    assert ("unbounded-tail", 13) in codes
    assert ("shadowed-rule", 17) in codes
    assert ("rule-on-denied-tool", 22) in codes
    assert ("rules-without-allowed-tools", 24) in codes
    assert ("unbounded-tail", 24) in codes
    assert ("allowed-and-denied", 0) in codes
    tails = [w["message"] for w in report["warnings"] if w["code"] == "unbounded-tail"]
    assert any("/tmp/../../etc/shadow" in m for m in tails)
    assert any("SELECT 1; DROP TABLE users" in m for m in tails)
    # `.*` on read_file.path is reported once, as matching everything, not also as a tail.
    assert ("unbounded-tail", 9) not in codes
    assert ("matches-everything", 17) not in codes  # .{0,100} bounds the length


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_examples_are_valid(example: Path) -> None:
    done = aipctl("policy", "check", str(example))
    assert done.returncode == 0, done.stdout + done.stderr


def explain(path: Path, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    human = aipctl("policy", "explain", str(path), "--tool", tool, "--args", json.dumps(args))
    assert human.returncode == 0, human.stderr
    assert "enforce mode" in human.stdout
    as_json = aipctl(
        "policy", "explain", "--json", str(path), "--tool", tool, "--args", json.dumps(args)
    )
    result: dict[str, Any] = json.loads(as_json.stdout)
    return result


CONDITIONAL = """\
  tool_rules:
    - tool: postgres_query
      action: allow
      allow_args:
        query: "^SELECT .*$"
    - tool: postgres_query
      action: ask
      allow_args:
        query: "^(INSERT|UPDATE|DELETE) .*$"
    - tool: postgres_query
      action: block
      allow_args:
        query: "^(DROP|ALTER|CREATE) .*$"
"""


def test_explain_conditional_approval(tmp_path: Path) -> None:
    path = write(tmp_path, CONDITIONAL)
    drop = explain(path, "postgres_query", {"query": "DROP TABLE users"})
    assert drop["rule"] == "tool_rules[2] (postgres_query block)"
    assert drop["enforce"]["outcome"] == "blocked_by_rule"
    assert drop["enforce"]["code"] == -32001
    assert drop["monitor"]["verdict"] == "forward"
    assert drop["monitor"]["would"] == "blocked_by_rule"
    assert any("does not full-match '^SELECT .*$'" in s for s in drop["steps"])

    insert = explain(path, "postgres_query", {"query": "INSERT INTO t VALUES (1)"})
    assert insert["enforce"]["verdict"] == "ask"
    assert insert["rule"] == "tool_rules[1] (postgres_query ask)"
    assert insert["monitor"]["would"] == "ask"

    neither = explain(path, "postgres_query", {"query": "VACUUM"})
    assert neither["enforce"]["outcome"] == "argument_invalid"
    assert neither["enforce"]["message"] == "Argument validation failed"


def test_explain_allowed_unknown_and_normalized(tmp_path: Path) -> None:
    path = write(tmp_path, "  allowed_tools: [read_file]\n")
    allowed = explain(path, "READ_FILE", {})
    assert allowed["enforce"]["outcome"] == "policy_allowed"
    assert any("normalized 'read_file'" in s for s in allowed["steps"])
    unknown = explain(path, "rm_rf", {})
    assert unknown["enforce"]["outcome"] == "not_allowed"
    assert unknown["monitor"]["would"] == "not_allowed"


def test_explain_protected_policy_file(tmp_path: Path) -> None:
    path = write(tmp_path, "  allowed_tools: [write_file]\n")
    hit = explain(path, "write_file", {"path": str(path)})
    assert hit["enforce"]["outcome"] == "protected_path"
    assert hit["enforce"]["code"] == -32007
    assert hit["monitor"]["outcome"] == "protected_path"  # enforced in monitor mode too


def test_explain_strict_args(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  tool_rules:\n    - tool: send\n      action: allow\n      strict_args: true\n"
        "      allow_args:\n        to: '^[a-z]+@example\\.com$'\n",
    )
    extra = explain(path, "send", {"to": "bob@example.com", "bcc": "eve@evil.example"})
    assert extra["enforce"]["outcome"] == "strict_args"
    assert any("undeclared ['bcc']" in s for s in extra["steps"])


def test_explain_refuses_bad_input(tmp_path: Path) -> None:
    path = write(tmp_path, "  allowed_tools: [a]\n")
    assert aipctl("policy", "explain", str(path), "--tool", "a", "--args", "[1]").returncode == 2
    assert aipctl("policy", "explain", str(path), "--tool", "a", "--args", "{").returncode == 2
    broken = write(tmp_path, "  allowed_tools: 3\n")
    done = aipctl("policy", "explain", str(broken), "--tool", "a")
    assert done.returncode == 1
    assert "aipctl policy check" in done.stderr


def test_unsafe_but_loadable_file_still_gets_its_warnings(tmp_path: Path) -> None:
    spec = "  tool_rules:\n    - tool: run\n      action: allow\n"
    spec += "      allow_args:\n        cmd: '.*'\n"
    path = write(tmp_path, spec, mode=0o664)
    rc, report = check_json(path)
    assert rc == 1
    assert "group- or world-writable" in report["errors"][0]["message"]
    assert [w["code"] for w in report["warnings"]] == [
        "matches-everything",
        "rules-without-allowed-tools",
    ]
