"""Properties of the patterns ``policy suggest`` learns: they match every approved value and
never a traversal, a control character or a value outside the learned folder."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from aip.approver.ctl.suggest import collect, suggest
from aip.shared.policy.load import load_policy_text
from aip.shared.policy.regexes import compile_pattern, full_match

POLICY = load_policy_text(
    "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata: {name: t}\nspec:\n"
    "  tool_rules:\n    - {tool: write_file, action: ask}\n    - {tool: rm, action: ask}\n"
)
NAME = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/"),
               min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))  # fmt: skip


def approvals(tool: str, values: list[Any], reason: str = "human approved") -> list[dict[str, Any]]:
    return [
        {"event": "decision", "tool": tool, "reason": reason, "session": f"s{i % 2}",
         "timestamp": "2026-12-01T00:00:00.000Z", "arguments": {"path": v},
         "human_decision": {"approved": True, "response_time_ms": 2000}}
        for i, v in enumerate(values)
    ]  # fmt: skip


@settings(max_examples=80, deadline=None)
@example(
    names=[["0", "0"], ["0"], ["1"], ["2"], ["3"], ["00"]]
)  # depth seen before the prefix shrank
@given(
    names=st.lists(st.lists(NAME, min_size=1, max_size=3), min_size=6, max_size=20, unique_by=tuple)
)
def test_learned_paths_cover_the_approved_and_nothing_that_escapes(names: list[list[str]]) -> None:
    values = ["/srv/build/" + "/".join(parts) for parts in names]
    found, skipped = suggest(POLICY, collect(approvals("write_file", values), None), 3)
    assert skipped == []
    (rule,) = found
    regex = compile_pattern(rule.allow_args["path"])
    for v in values:
        assert full_match(regex, v.encode())
    for bad in (
        "/srv/build/../etc/passwd",
        "/srv/build/x/../../../etc",
        "/srv/build/./x",
        "/srv/build/a\n/etc/passwd",
        "/srv/buildx/a",
        "/etc/passwd",
        "/srv/build/",
    ):
        assert not full_match(regex, bad.encode()), bad  # fmt: skip


def test_few_values_are_exact_and_a_denial_stops_an_allow() -> None:
    ev = collect(approvals("write_file", ["/a b/x", "/a b/x", "/c(d)"]), None)
    (rule,) = suggest(POLICY, ev, 3)[0]
    regex = compile_pattern(rule.allow_args["path"])
    assert full_match(regex, b"/a b/x")
    assert full_match(regex, b"/c(d)")
    assert not full_match(regex, b"/a b/y")
    denied = approvals("write_file", ["/x"] * 5) + approvals("write_file", ["/y"], "human denied")
    found, skipped = suggest(POLICY, collect(denied, None), 3)
    assert found == []
    assert "denied" in skipped[0]["reason"]


def test_a_tool_only_ever_denied_gets_a_block_and_redacted_values_teach_nothing() -> None:
    found, _ = suggest(POLICY, collect(approvals("rm", ["/"] * 3, "human denied"), None), 3)
    assert [(s.tool, s.action.value) for s in found] == [("rm", "block")]
    redacted = approvals("write_file", ["/k/[REDACTED:aws-key]"] * 5)
    found, skipped = suggest(POLICY, collect(redacted, None), 3)
    assert found == []
    assert "readable arguments" in skipped[0]["reason"]


def test_never_remember_tools_get_no_allow() -> None:
    policy = load_policy_text(
        "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata: {name: t}\nspec:\n"
        "  tool_rules:\n    - {tool: write_file, action: ask, x-aip-never-remember: true}\n"
    )
    records = approvals("write_file", ["/srv/a", "/srv/b", "/srv/c"])
    found, skipped = suggest(policy, collect(records, None), 3)
    assert found == []
    assert skipped == [{"tool": "write_file", "reason": "the policy marks it never to be "
                        "remembered (x-aip-never-remember)"}]  # fmt: skip
    assert suggest(POLICY, collect(records, None), 3)[0]  # without the key: an allow
