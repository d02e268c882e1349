"""Every example policy of the user guide, as shipped in ``examples/policies/``, through the
real proxy: each rule exercised, and the documented regex surprises (DESIGN §4.9) shown.

Asks are answered ``approver_unavailable`` here (no approver runs), which proves the call was
asked and not forwarded; the approver's own tests cover the dialog.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.proxyproc import RAW_SERVER, ProxyProcess  # noqa: E402

pytestmark = pytest.mark.e2e
POLICIES = ROOT / "examples" / "policies"

ALLOW, ASK = "allow", "approver_unavailable"
MULTILINE = "SELECT *\nFROM users"

# policy file -> [(tool, arguments, expected: ALLOW, ASK or the data.reason of the block)]
CASES: dict[str, list[tuple[str, dict[str, Any], str]]] = {
    "hitl-example.yaml": [
        ("read_file", {"path": "/etc/config.yaml"}, ALLOW),
        ("write_file", {"path": "/etc/config.yaml", "content": "..."}, ASK),
        ("delete_file", {"path": "/tmp/x"}, "not_allowed"),
    ],
    "guide-1-financial-operations.yaml": [
        ("stripe_create_charge", {"amount": 100}, ASK),
        ("stripe_create_charge", {"amount": "100"}, ASK),
        ("stripe_create_charge", {"amount": 100.0}, "argument_invalid"),
        ("stripe_create_charge", {"amount": "10; rm -rf /"}, "argument_invalid"),
        ("stripe_create_charge", {}, "argument_invalid"),
    ],
    "guide-2-production-deployments.yaml": [
        ("kubernetes_apply", {"namespace": "production"}, ASK),
        # A regex on an ask rule is a condition, not a filter: other namespaces match no
        # rule and are blocked unless an extra allow rule exists (DESIGN §4.9).
        ("kubernetes_apply", {"namespace": "staging"}, "argument_invalid"),
    ],
    "guide-3-data-deletion.yaml": [
        ("s3_delete_object", {"bucket": "b", "key": "k"}, ASK),
        ("postgres_query", {"query": "DELETE FROM users WHERE id = 1"}, ASK),
        ("postgres_query", {"query": "SELECT 1"}, "argument_invalid"),
    ],
    "guide-4-external-communications.yaml": [
        ("slack_post_message", {"channel": "#general", "text": "hi"}, ASK),
        ("slack_post_message", {"channel": "#announcements", "text": "hi"}, ASK),
        ("slack_post_message", {"channel": "@ceo", "text": "hi"}, "argument_invalid"),
        ("email_send", {"to": "a@example.com"}, ASK),
    ],
    "guide-5-argument-validation.yaml": [
        ("write_file", {"path": "/tmp/x", "content": "c"}, ALLOW),
        ("write_file", {"path": "/etc/x", "content": "c"}, ASK),
        ("write_file", {"path": "/home/x", "content": "c"}, "argument_invalid"),
        # a regex is not a path parser
        ("write_file", {"path": "/tmp/../etc/shadow", "content": "c"}, ALLOW),
    ],
    "guide-6-conditional-approval.yaml": [
        ("postgres_query", {"query": "SELECT * FROM users"}, ALLOW),
        ("postgres_query", {"query": "INSERT INTO t VALUES (1)"}, ASK),
        ("postgres_query", {"query": "DROP TABLE users"}, "blocked_by_rule"),
        ("postgres_query", {"query": "GRANT ALL ON users TO x"}, "argument_invalid"),
        # a regex is not an SQL parser, and "." does not cross a newline
        ("postgres_query", {"query": "SELECT 1; DROP TABLE users"}, ALLOW),
        ("postgres_query", {"query": MULTILINE}, "argument_invalid"),
    ],
}


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[list[ProxyProcess]]:
    started: list[ProxyProcess] = []
    yield started
    for p in started:
        p.kill()


def test_every_guide_policy_file_is_covered() -> None:
    # the guide's fragments (other example policies may come and go)
    shipped = {p.name for p in POLICIES.glob("guide-*.yaml")} | {"hitl-example.yaml"}
    assert shipped, "the guide's example policies are missing from examples/policies/"
    assert shipped <= set(CASES), f"untested example policies: {shipped - set(CASES)}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_guide_policy_through_the_proxy(
    name: str, tmp_path: Path, proxies: list[ProxyProcess]
) -> None:
    policy = POLICIES / name
    assert policy.exists(), f"{policy} is not shipped"
    log = tmp_path / "server.log"
    tools = sorted({tool for tool, _, _ in CASES[name]})
    p = ProxyProcess(policy, [*RAW_SERVER, "--log", str(log), "--tools", ",".join(tools)], tmp_path)
    proxies.append(p)
    p.initialize()
    for i, (tool, args, expected) in enumerate(CASES[name], start=1):
        reply = p.call(i, tool, args)
        if expected == ALLOW:
            assert "result" in reply, (tool, args, reply)
            continue
        assert "error" in reply, (tool, args, reply)
        assert reply["error"]["data"]["reason"] == expected, (tool, args, reply)
        code = -32002 if expected == ASK else -32001
        assert reply["error"]["code"] == code
    forwarded = [line for line in log.read_text().splitlines() if '"tools/call"' in line]
    assert len(forwarded) == sum(1 for *_, e in CASES[name] if e == ALLOW)
