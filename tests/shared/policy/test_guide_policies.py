"""Every shipped example policy loads, and the user guide's examples behave as DESIGN §4.9 says.

The documented surprises are asserted on purpose: the guide's patterns are regexes, not path
or SQL parsers (``/tmp/../etc/shadow`` and ``SELECT 1; DROP TABLE users`` are allowed).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from aip.shared.outcomes import Outcome, row
from aip.shared.policy.decision import Verdict
from aip.shared.policy.engine import filter_tools_list
from aip.shared.policy.load import load_policy, load_policy_text
from aip.shared.policy.model import Policy
from tests.shared.enginekit import EXAMPLES, call, run, wrap

ALLOW, ASK = "allow", "ask"


def load(stem: str) -> Policy:
    return load_policy(EXAMPLES / f"{stem}.yaml")


def verdict_of(pol: Policy, tool: str, **args: Any) -> str | Outcome:
    d = run(pol, call(tool, args))
    if d.verdict is Verdict.FORWARD:
        assert d.monitor_would is None
        return ALLOW
    if d.verdict is Verdict.ASK:
        return ASK
    assert d.outcome is not None
    return d.outcome


def test_every_example_policy_loads_and_is_tested_here() -> None:
    files = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
    assert files == sorted(
        [
            "demo.yaml",
            "dlp-example.yaml",  # tests/proxy/test_dlp_relay.py runs it
            "hitl-example.yaml",
            "guide-1-financial-operations.yaml",
            "guide-2-production-deployments.yaml",
            "guide-3-data-deletion.yaml",
            "guide-4-external-communications.yaml",
            "guide-5-argument-validation.yaml",
            "guide-6-conditional-approval.yaml",
        ]
    )
    for path in EXAMPLES.glob("*.yaml"):
        pol = load_policy(path)  # with the ownership and mode checks of a real start
        assert pol.path == str(path.resolve())
        expected = (
            "-".join(path.stem.split("-")[:2]) if path.stem.startswith("guide-") else path.stem
        )
        assert pol.name == expected


@pytest.mark.parametrize(
    ("stem", "name"),
    [(f"guide-{n}-{s}", f"guide-{n}") for n, s in [
        (1, "financial-operations"), (2, "production-deployments"), (3, "data-deletion"),
        (4, "external-communications"), (5, "argument-validation"), (6, "conditional-approval"),
    ]],
)  # fmt: skip
def test_guide_fragments_are_wrapped_as_design_says(stem: str, name: str) -> None:
    pol = load(stem)
    assert pol.name == name
    assert pol.api_version == "aip.io/v1alpha1"


def test_hitl_example() -> None:
    pol = load("hitl-example")
    assert verdict_of(pol, "read_file", path="/etc/config.yaml") == ALLOW
    assert verdict_of(pol, "write_file", path="/etc/config.yaml", content="...") == ASK
    assert verdict_of(pol, "delete_file", path="/tmp/x") == Outcome.NOT_ALLOWED


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (100, ASK),
        ("100", ASK),
        (0, ASK),
        (100.0, Outcome.ARGUMENT_INVALID),  # JSON text "100.0" has a dot
        ("10; rm", Outcome.ARGUMENT_INVALID),
        (-5, Outcome.ARGUMENT_INVALID),
        ("1e3", Outcome.ARGUMENT_INVALID),
        (True, Outcome.ARGUMENT_INVALID),
        ("100\n", Outcome.ARGUMENT_INVALID),  # RE2 "$" is end of text, not "before a newline"
    ],
)
def test_guide_1_financial(amount: object, expected: object) -> None:
    assert (
        verdict_of(load("guide-1-financial-operations"), "stripe_create_charge", amount=amount)
        == expected
    )


def test_guide_1_missing_amount_is_blocked_and_named() -> None:
    d = run(load("guide-1-financial-operations"), call("stripe_create_charge", {}))
    assert d.outcome is Outcome.ARGUMENT_INVALID
    assert d.data == {"argument": "amount", "pattern": "^[0-9]+$"}
    assert row(d.outcome).code == -32001
    assert row(d.outcome).message == "Argument validation failed"


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        ("production", ASK),
        ("staging", Outcome.ARGUMENT_INVALID),  # documented: blocked, not allowed
        ("Production", Outcome.ARGUMENT_INVALID),
        ("production-2", Outcome.ARGUMENT_INVALID),
    ],
)
def test_guide_2_production(namespace: str, expected: object) -> None:
    pol = load("guide-2-production-deployments")
    assert verdict_of(pol, "kubernetes_apply", namespace=namespace, manifest="x") == expected


def test_guide_3_data_deletion() -> None:
    pol = load("guide-3-data-deletion")
    assert verdict_of(pol, "s3_delete_object", bucket="b", key="k") == ASK
    assert verdict_of(pol, "postgres_query", query="DELETE FROM users WHERE id = 1") == ASK
    assert verdict_of(pol, "postgres_query", query="SELECT 1") == Outcome.ARGUMENT_INVALID
    assert (
        verdict_of(pol, "postgres_query", query="DELETE FROM a\nDROP b") == Outcome.ARGUMENT_INVALID
    )


def test_guide_4_external_communications() -> None:
    pol = load("guide-4-external-communications")
    assert verdict_of(pol, "slack_post_message", channel="#general", text="hi") == ASK
    assert verdict_of(pol, "slack_post_message", channel="#announcements", text="hi") == ASK
    assert (
        verdict_of(pol, "slack_post_message", channel="#secret", text="hi")
        == Outcome.ARGUMENT_INVALID
    )
    assert (
        verdict_of(pol, "slack_post_message", channel="@ceo", text="hi") == Outcome.ARGUMENT_INVALID
    )
    assert verdict_of(pol, "email_send", to="x@example.com") == ASK


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/tmp/x", ALLOW),
        ("/etc/x", ASK),
        ("/home/x", Outcome.ARGUMENT_INVALID),
        ("/tmp/../etc/shadow", ALLOW),  # documented: a regex is not a path parser
        ("/etc/../home/x", ASK),
        ("/tmp/x\n/etc/y", Outcome.ARGUMENT_INVALID),
        ("tmp/x", Outcome.ARGUMENT_INVALID),
    ],
)
def test_guide_5_argument_validation(path: str, expected: object) -> None:
    assert (
        verdict_of(load("guide-5-argument-validation"), "write_file", path=path, content="c")
        == expected
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT * FROM users", ALLOW),
        ("INSERT INTO users VALUES (1)", ASK),
        ("UPDATE users SET a = 1", ASK),
        ("DELETE FROM users", ASK),
        ("DROP TABLE users", Outcome.BLOCKED_BY_RULE),
        ("ALTER TABLE users ADD b int", Outcome.BLOCKED_BY_RULE),
        ("CREATE TABLE t (a int)", Outcome.BLOCKED_BY_RULE),
        ("GRANT ALL ON users TO eve", Outcome.ARGUMENT_INVALID),  # rules exist, none match
        ("SELECT 1; DROP TABLE users", ALLOW),  # documented: a regex is not an SQL parser
        ("SELECT *\nFROM users", Outcome.ARGUMENT_INVALID),  # "." does not cross newlines
        ("select * from users", Outcome.ARGUMENT_INVALID),  # patterns are case-sensitive
        ("SELECT", Outcome.ARGUMENT_INVALID),  # the pattern needs the space
    ],
)
def test_guide_6_conditional_approval(query: str, expected: object) -> None:
    assert (
        verdict_of(load("guide-6-conditional-approval"), "postgres_query", query=query) == expected
    )


def test_guide_6_first_failing_rule_is_named() -> None:
    d = run(load("guide-6-conditional-approval"), call("postgres_query", query="GRANT x"))
    assert d.data == {"argument": "query", "pattern": "^SELECT .*$"}
    assert d.rule is not None
    assert d.rule.index == 0
    assert "query" in d.detail


def test_guide_6_blocking_rule_is_reported() -> None:
    d = run(load("guide-6-conditional-approval"), call("postgres_query", query="DROP TABLE x"))
    assert d.rule is not None
    assert d.rule.label == "tool_rules[2] (postgres_query block)"
    assert row(Outcome.BLOCKED_BY_RULE).message == "Forbidden"


def test_demo_policy(tmp_path: Path) -> None:
    pol = load("demo")
    assert verdict_of(pol, "read_file", path="/tmp/aip-demo/notes.txt") == ALLOW
    assert verdict_of(pol, "read_file", path="~/.ssh/id_rsa") == Outcome.PROTECTED_PATH
    assert verdict_of(pol, "write_file", path="/tmp/aip-demo/a.txt", content="x") == ALLOW
    assert verdict_of(pol, "write_file", path="/tmp/aip-demo/../../etc/passwd", content="x") == ASK
    assert verdict_of(pol, "write_file", path="/etc/hosts", content="x") == ASK
    assert verdict_of(pol, "delete_file", path="/tmp/aip-demo/a.txt") == Outcome.DENIED_TOOL
    assert verdict_of(pol, "postgres_query", query="SELECT * FROM users") == ALLOW
    assert (
        verdict_of(pol, "postgres_query", query="SELECT 1; DROP TABLE users")
        == Outcome.ARGUMENT_INVALID
    )
    assert verdict_of(pol, "postgres_query", query="INSERT INTO t VALUES (1)") == ASK
    assert verdict_of(pol, "postgres_query", query="drop table users") == Outcome.BLOCKED_BY_RULE
    assert verdict_of(pol, "postgres_query", query="GRANT ALL") == Outcome.ARGUMENT_INVALID
    assert verdict_of(pol, "exec_command", command="ls") == Outcome.NOT_ALLOWED
    listed = filter_tools_list(
        pol,
        {
            "tools": [
                {"name": n} for n in ("read_file", "write_file", "delete_file", "postgres_query")
            ]
        },
    )
    assert listed == {
        "tools": [{"name": "read_file"}, {"name": "write_file"}, {"name": "postgres_query"}]
    }


def test_demo_select_rate_limit() -> None:
    pol = load("demo")
    from aip.shared.policy.ratelimit import RateLimiter

    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    select = call("postgres_query", query="SELECT 1")
    for _ in range(60):
        assert run(pol, select, limiter).verdict is Verdict.FORWARD
    assert run(pol, select, limiter).outcome is Outcome.RATE_LIMITED
    now[0] += 1.0  # one token per second comes back
    assert run(pol, select, limiter).verdict is Verdict.FORWARD


def test_the_policy_reference_snippets_load() -> None:
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    envelope, rule, dlp = blocks
    assert load_policy_text(envelope).name == "my-policy"
    pol = load_policy_text(wrap("tool_rules:\n" + textwrap.indent(rule, "  ")))
    assert pol.tool_rules[0].rate_limit is not None
    assert pol.tool_rules[0].strict_args is True
    assert load_policy_text(wrap(dlp)).dlp.on_request_match.value == "block"
