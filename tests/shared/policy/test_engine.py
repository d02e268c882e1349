"""The decision engine (DESIGN \u00a74.3\u20134.8) on hand-made policies and messages."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aip.shared.outcomes import Outcome
from aip.shared.policy.decision import Verdict
from aip.shared.policy.engine import WOULD_ASK, decide, filter_tools_list, method_allowed
from aip.shared.policy.model import Action, ArgPattern, Mode, Policy, RateLimit, ToolRule
from aip.shared.policy.names import normalize
from aip.shared.policy.ratelimit import RateLimiter
from aip.shared.policy.regexes import compile_pattern, value_bytes
from tests.shared.enginekit import CTX, call, policy, run


def msg(method: str, params: Any = None, **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method, **extra}
    if params is not None:
        m["params"] = params
    return m


# ---- methods (§4.6) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        "initialize", "server/discover", "ping", "tools/list", "tools/call",
        "completion/complete", "notifications/initialized", "notifications/cancelled",
        "notifications/progress", "notifications/roots/list_changed", "Ping", "TOOLS/LIST",
        "\uff50\uff49\uff4e\uff47",
    ],
)  # fmt: skip
def test_default_methods(method: str) -> None:
    pol = policy("allowed_tools: []")
    assert method_allowed(pol, normalize(method))


@pytest.mark.parametrize(
    "method",
    ["resources/read", "prompts/get", "logging/setLevel", "sampling/createMessage", "initialized",
     "cancelled", "tools/ call"],
)  # fmt: skip
def test_other_methods_are_blocked_by_default(method: str) -> None:
    d = run(policy("allowed_tools: []"), msg(method))
    assert (d.verdict, d.outcome) == (Verdict.BLOCK, Outcome.METHOD_NOT_ALLOWED)
    assert d.data == {"method": method}


def test_allowed_methods_replaces_the_defaults_but_keeps_the_lifecycle() -> None:
    pol = policy("allowed_methods: [resources/read]")
    assert run(pol, msg("resources/read")).verdict is Verdict.FORWARD
    assert run(pol, msg("tools/list")).outcome is Outcome.METHOD_NOT_ALLOWED
    assert run(pol, call("anything")).outcome is Outcome.METHOD_NOT_ALLOWED
    lifecycle = ("initialize", "server/discover", "notifications/initialized", "ping")
    for kept in (*lifecycle, "notifications/cancelled"):
        assert run(pol, msg(kept)).verdict is Verdict.FORWARD


def test_denied_methods_win_over_everything() -> None:
    pol = policy("allowed_methods: ['*']\ndenied_methods: [Ping, tools/call, dangerous/method]")
    assert run(pol, msg("any/method")).verdict is Verdict.FORWARD
    for m in ("ping", "PING", "dangerous/method"):
        assert run(pol, msg(m)).outcome is Outcome.METHOD_NOT_ALLOWED
    assert run(pol, call("t")).outcome is Outcome.METHOD_NOT_ALLOWED


def test_star_in_denied_methods_keeps_only_the_lifecycle() -> None:
    pol = policy("allowed_methods: ['*']\ndenied_methods: ['*']")
    assert run(pol, msg("tools/list")).outcome is Outcome.METHOD_NOT_ALLOWED
    assert run(pol, msg("ping")).verdict is Verdict.FORWARD
    assert (
        run(policy("denied_methods: ['*', ping]"), msg("ping")).outcome
        is Outcome.METHOD_NOT_ALLOWED
    )


def test_method_blocks_stay_enforced_in_monitor_mode() -> None:
    assert run(policy("mode: monitor"), msg("resources/read")).outcome is Outcome.METHOD_NOT_ALLOWED


def test_tools_call_is_recognised_after_normalization() -> None:
    pol = policy("tool_rules:\n  - {tool: rm, action: block}")
    # Near-misses that normalize to tools/call are tool calls (decided), never passed unchecked.
    variants = (
        "TOOLS/CALL",
        "Tools/Call",
        "\uff54\uff4f\uff4f\uff4c\uff53\uff0f\uff43\uff41\uff4c\uff4c",
        "\ufefftools/call",
        "tools/call ",
        "tools/call\u200b",
    )
    for method in ("tools/call", *variants):
        d = run(pol, {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"name": "rm"}})
        assert d.outcome is Outcome.BLOCKED_BY_RULE, method


# ---- malformed tools/call -----------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [None, [], "x", {}, {"name": 5}, {"name": None}, {"name": "t", "arguments": []},
     {"name": "t", "arguments": "x"}, {"name": "t", "arguments": 3}],
)  # fmt: skip
def test_malformed_tools_call_is_invalid_request(params: Any) -> None:
    pol = policy("allowed_tools: [t]")
    m = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    if params is not None:
        m["params"] = params
    d = run(pol, m)
    assert (d.verdict, d.outcome) == (Verdict.BLOCK, Outcome.INVALID_REQUEST)
    assert run(policy("mode: monitor\nallowed_tools: [t]"), m).outcome is Outcome.INVALID_REQUEST


def test_message_without_a_method_is_invalid() -> None:
    assert (
        run(policy("allowed_tools: []"), {"jsonrpc": "2.0", "id": 1}).outcome
        is Outcome.INVALID_REQUEST
    )


def test_absent_arguments_mean_none_but_null_is_invalid() -> None:
    pol = policy("allowed_tools: [t]")
    assert run(pol, call("t")).verdict is Verdict.FORWARD
    null_args = msg("tools/call", {"name": "t", "arguments": None})
    assert run(pol, null_args).outcome is Outcome.INVALID_REQUEST


def test_notifications_are_decided_like_requests() -> None:
    pol = policy("tool_rules:\n  - {tool: t, action: ask}")
    note = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "t"}}
    assert (
        run(pol, note).verdict is Verdict.ASK
    )  # the proxy turns an ask on a notification into a drop


# ---- tool decision (§4.4) -----------------------------------------------------------------


def test_decision_order_denied_then_rules_then_allowed_tools() -> None:
    pol = policy(
        """
        allowed_tools: [a, b, c]
        denied_tools: [A]
        tool_rules:
          - {tool: a, action: allow}
          - {tool: b, action: block}
        """
    )
    assert run(pol, call("a")).outcome is Outcome.DENIED_TOOL
    assert run(pol, call("b")).outcome is Outcome.BLOCKED_BY_RULE  # block beats allowed_tools
    d = run(pol, call("c"))
    assert (d.verdict, d.outcome, d.rule) == (Verdict.FORWARD, Outcome.POLICY_ALLOWED, None)
    assert run(pol, call("d")).outcome is Outcome.NOT_ALLOWED


def test_first_matching_rule_wins_in_file_order() -> None:
    pol = policy(
        """
        tool_rules:
          - {tool: t, action: ask, allow_args: {p: "^/etc/.*$"}}
          - {tool: t, action: allow, allow_args: {p: "^/.*$"}}
          - {tool: t, action: block}
        """
    )
    assert run(pol, call("t", p="/etc/x")).verdict is Verdict.ASK
    d = run(pol, call("t", p="/home/x"))
    assert d.verdict is Verdict.FORWARD
    assert d.rule is not None
    assert d.rule.index == 1
    assert run(pol, call("t", p="rel")).outcome is Outcome.BLOCKED_BY_RULE


def test_rule_names_are_normalized_but_allow_args_keys_are_exact() -> None:
    pol = policy(
        "tool_rules:\n  - {tool: Write_File, action: allow, allow_args: {Path: '^/tmp/.*$'}}"
    )
    assert run(pol, call("WRITE_FILE", Path="/tmp/x")).verdict is Verdict.FORWARD
    d = run(pol, call("write_file", path="/tmp/x"))
    assert d.outcome is Outcome.ARGUMENT_INVALID
    assert d.data["argument"] == "Path"
    assert "missing" in d.detail


def test_decision_carries_the_raw_tool_name() -> None:
    pol = policy("allowed_tools: [read_file]")
    assert run(pol, call("READ_FILE")).tool == "READ_FILE"


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("/tmp/", "/tmp/x", False),  # full-match: no prefix matching
        ("/tmp/.*", "/tmp/x", True),
        ("^/tmp/.*$", "/tmp/x\n", False),  # "$" is end of text in RE2
        ("a|b", "ab", False),
        ("a|b", "b", True),
        ("[0-9]+", 42, True),
        ("42", 42, True),
        ("100\\.0", 100.0, True),
        ("true", True, True),
        ("null", None, True),
        ("\\[1,2\\]", [1, 2], True),
        ('\\{"a":1,"b":2\\}', {"b": 2, "a": 1}, True),  # sorted keys
        ("\\d+", "\u0661\u0662\u0663", False),  # RE2 \\d is ASCII-only
        ("\u00e9+", "\u00e9\u00e9", True),  # UTF-8 aware
        (".", "\u00e9", True),
        ("", "", True),
    ],
)
def test_full_match_semantics(pattern: str, value: object, matches: bool) -> None:
    data = value_bytes(value)
    assert data is not None
    assert (compile_pattern(pattern).fullmatch(data) is not None) is matches


def test_argument_invalid_names_the_first_rules_first_failing_argument() -> None:
    pol = policy(
        """
        tool_rules:
          - {tool: t, action: allow, allow_args: {a: "^x$", b: "^y$", c: "^z$"}}
          - {tool: t, action: ask, allow_args: {c: "^q$"}}
        """
    )
    d = run(pol, call("t", a="x", b="nope", c="z"))
    assert d.outcome is Outcome.ARGUMENT_INVALID
    assert d.data == {"argument": "b", "pattern": "^y$"}
    assert d.rule is not None
    assert d.rule.index == 0


def test_strict_args() -> None:
    pol = policy(
        """
        tool_rules:
          - {tool: s, action: allow, strict_args: true, allow_args: {url: "^https://.*$"}}
          - {tool: n, action: ask, strict_args: true}
          - {tool: l, action: allow, allow_args: {url: "^https://.*$"}}
        """
    )
    d = run(pol, call("s", url="https://x", headers={"Authorization": "x"}))
    assert (d.outcome, d.data) == (Outcome.STRICT_ARGS, {"argument": "headers"})
    assert run(pol, call("s", url="https://x")).verdict is Verdict.FORWARD
    assert (
        run(pol, call("n", anything=1)).outcome is Outcome.STRICT_ARGS
    )  # no allow_args: all count
    assert run(pol, call("n")).verdict is Verdict.ASK
    assert run(pol, call("l", url="https://x", extra=1)).verdict is Verdict.FORWARD


def test_strict_args_default_applies_to_rules_only() -> None:
    pol = policy(
        """
        strict_args_default: true
        allowed_tools: [free]
        tool_rules:
          - {tool: r, action: allow, allow_args: {a: ".*"}}
          - {tool: o, action: allow, strict_args: false, allow_args: {a: ".*"}}
        """
    )
    assert run(pol, call("r", a="1", b="2")).outcome is Outcome.STRICT_ARGS
    assert run(pol, call("o", a="1", b="2")).verdict is Verdict.FORWARD
    assert run(pol, call("free", anything="goes")).verdict is Verdict.FORWARD


def test_block_rule_with_undeclared_args_is_still_blocked_by_rule() -> None:
    pol = policy("strict_args_default: true\ntool_rules:\n  - {tool: t, action: block}")
    assert run(pol, call("t", x=1)).outcome is Outcome.BLOCKED_BY_RULE


# ---- rate limits --------------------------------------------------------------------------


def test_allow_spends_tokens_and_blocks_when_empty() -> None:
    pol = policy("tool_rules:\n  - {tool: t, action: allow, rate_limit: 2/minute}")
    limiter = RateLimiter(clock=lambda: 0.0)
    assert run(pol, call("t"), limiter).verdict is Verdict.FORWARD
    assert run(pol, call("t"), limiter).verdict is Verdict.FORWARD
    d = run(pol, call("t"), limiter)
    assert (d.verdict, d.outcome) == (Verdict.BLOCK, Outcome.RATE_LIMITED)
    assert "2/minute" in d.detail


def test_blocked_calls_do_not_spend_tokens() -> None:
    pol = policy(
        "tool_rules:\n  - {tool: t, action: allow, rate_limit: 1/hour, allow_args: {a: '^ok$'}}"
    )
    limiter = RateLimiter(clock=lambda: 0.0)
    for _ in range(5):
        assert run(pol, call("t", a="bad"), limiter).outcome is Outcome.ARGUMENT_INVALID
    assert run(pol, call("t", a="ok"), limiter).verdict is Verdict.FORWARD


def test_ask_reserves_a_token_that_can_be_given_back() -> None:
    pol = policy("tool_rules:\n  - {tool: t, action: ask, rate_limit: 1/hour}")
    limiter = RateLimiter(clock=lambda: 0.0)
    d = run(pol, call("t"), limiter)
    assert d.verdict is Verdict.ASK
    assert d.token_reserved
    assert d.rule is not None
    assert run(pol, call("t"), limiter).outcome is Outcome.RATE_LIMITED  # no dialog
    limiter.give_back(d.rule)  # the human said no
    assert run(pol, call("t"), limiter).verdict is Verdict.ASK


def test_ask_without_rate_limit_reserves_nothing() -> None:
    d = run(policy("tool_rules:\n  - {tool: t, action: ask}"), call("t"))
    assert d.verdict is Verdict.ASK
    assert not d.token_reserved
    assert d.outcome is None


# ---- monitor mode (§4.8) ------------------------------------------------------------------


def test_monitor_mode_forwards_what_enforce_would_stop() -> None:
    pol = policy(
        """
        mode: monitor
        allowed_tools: [ok]
        denied_tools: [bad]
        tool_rules:
          - {tool: q, action: ask}
          - {tool: b, action: block}
          - {tool: s, action: allow, strict_args: true}
          - {tool: r, action: allow, rate_limit: 1/hour}
          - {tool: v, action: allow, allow_args: {a: "^x$"}}
        """
    )
    limiter = RateLimiter(clock=lambda: 0.0)
    expected = {
        "bad": Outcome.DENIED_TOOL,
        "nope": Outcome.NOT_ALLOWED,
        "q": WOULD_ASK,
        "b": Outcome.BLOCKED_BY_RULE,
        "v": Outcome.ARGUMENT_INVALID,
    }
    for tool, would in expected.items():
        d = run(pol, call(tool, a="y"), limiter)
        assert (d.verdict, d.outcome, d.monitor_would) == (
            Verdict.FORWARD,
            Outcome.POLICY_ALLOWED,
            would,
        )
        assert not d.token_reserved
    assert run(pol, call("s", a=1), limiter).monitor_would is Outcome.STRICT_ARGS
    assert run(pol, call("r"), limiter).monitor_would is None
    assert run(pol, call("r"), limiter).monitor_would is Outcome.RATE_LIMITED
    d = run(pol, call("ok"), limiter)
    assert d.verdict is Verdict.FORWARD
    assert d.monitor_would is None


# ---- tools/list filtering (§4.7) ----------------------------------------------------------


def test_tools_list_filtering() -> None:
    pol = policy(
        """
        allowed_tools: [listed, denied]
        denied_tools: [denied]
        tool_rules:
          - {tool: blocked, action: block}
          - {tool: mixed, action: block, allow_args: {q: "^DROP.*$"}}
          - {tool: mixed, action: allow}
          - {tool: asked, action: ask}
        """
    )
    names = ["listed", "LISTED", "denied", "blocked", "mixed", "asked", "unknown"]
    result = {
        "tools": [{"name": n, "inputSchema": {}} for n in names] + [{"x": 1}, "junk"],
        "nextCursor": "c",
    }
    filtered = filter_tools_list(pol, result)
    assert filtered is not None
    assert [t["name"] for t in filtered["tools"]] == ["listed", "LISTED", "mixed", "asked"]
    assert filtered["nextCursor"] == "c"
    assert len(result["tools"]) == 9  # the input is not modified


def test_tools_list_unchanged_returns_none() -> None:
    pol = policy("allowed_tools: [a]")
    assert filter_tools_list(pol, {"tools": [{"name": "a"}]}) is None
    assert filter_tools_list(pol, {"tools": "weird"}) is None
    assert filter_tools_list(pol, {}) is None
    assert filter_tools_list(policy("mode: monitor"), {"tools": [{"name": "x"}]}) is None


# ---- the property: nothing is forwarded unless an allow full-matches --------------------

_PATTERNS = ["^a+$", "b.*", "[0-9]+", ".*", "^$", "a|b"]
_VALUES = st.one_of(
    st.text(alphabet="ab0 \n", max_size=4), st.integers(-3, 30), st.booleans(), st.none()
)


@st.composite
def _policies(draw: st.DrawFn) -> Policy:
    rules = []
    for i in range(draw(st.integers(0, 4))):
        tool = draw(st.sampled_from(["t", "T", "u"]))
        arg_names = draw(st.lists(st.sampled_from(["x", "y"]), unique=True, max_size=2))
        args = tuple(
            ArgPattern(n, p, compile_pattern(p))
            for n, p in ((n, draw(st.sampled_from(_PATTERNS))) for n in arg_names)
        )
        limit = draw(st.sampled_from([None, RateLimit(1, 3600.0, "1/hour")]))
        rules.append(
            ToolRule(i, normalize(tool), tool, draw(st.sampled_from(list(Action))), args,
                     draw(st.sampled_from([None, True, False])), limit, i + 1)
        )  # fmt: skip
    return Policy(
        name="p",
        api_version="aip.io/v1alpha1",
        path=None,
        sha256="",
        mode=Mode.ENFORCE,
        allowed_tools=frozenset(draw(st.sets(st.sampled_from(["t", "u", "v"])))),
        denied_tools=frozenset(draw(st.sets(st.sampled_from(["t", "v"]), max_size=1))),
        tool_rules=tuple(rules),
        strict_args_default=draw(st.booleans()),
    )


def _oracle_allows(pol: Policy, tool: str, args: dict[str, Any]) -> tuple[bool, bool]:
    """(forward possible, ask possible) computed the slow, obvious way."""
    tool = normalize(tool)
    if tool in pol.denied_tools:
        return False, False
    rules = [r for r in pol.tool_rules if r.tool == tool]
    if not rules:
        return tool in pol.allowed_tools, False
    for r in rules:
        ok = all(
            a.name in args
            and (b := value_bytes(args[a.name])) is not None
            and a.regex.fullmatch(b) is not None
            for a in r.allow_args
        )
        if ok:
            strict = pol.strict_args_default if r.strict_args is None else r.strict_args
            clean = not strict or all(k in {a.name for a in r.allow_args} for k in args)
            return r.action is Action.ALLOW and clean, r.action is Action.ASK and clean
    return False, False


@settings(max_examples=300, deadline=None)
@given(
    pol=_policies(),
    tool=st.sampled_from(["t", "T", "u", "v", "w"]),
    args=st.dictionaries(st.sampled_from(["x", "y", "z"]), _VALUES, max_size=3),
)
def test_decide_is_deny_unless_an_allow_rule_full_matches(
    pol: Policy, tool: str, args: dict[str, Any]
) -> None:
    d = decide(pol, call(tool, args), RateLimiter(clock=lambda: 0.0), CTX)
    may_forward, may_ask = _oracle_allows(pol, tool, args)
    assert (d.verdict is Verdict.FORWARD) == may_forward
    assert (d.verdict is Verdict.ASK) == may_ask
    if d.verdict is Verdict.BLOCK:
        assert d.outcome is not None
        assert d.outcome is not Outcome.POLICY_ALLOWED


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
_FUZZ_POLICY = policy(
    """
    allowed_methods: [tools/call, resources/read]
    allowed_tools: [a]
    protected_paths: [/etc]
    tool_rules:
      - {tool: t, action: allow, strict_args: true, allow_args: {x: "^[a-z]*$"}}
      - {tool: t, action: ask, rate_limit: 1/hour}
    """
)


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["tools/call", "TOOLS/CALL", "resources/read", "ping", "x"])
    | st.text(max_size=8),
    params=_JSON,
    name=st.sampled_from(["t", "a", "T\u200b"]) | _JSON,
    arguments=_JSON,
)
def test_decide_never_raises_on_any_json(
    method: str, params: Any, name: Any, arguments: Any
) -> None:
    limiter = RateLimiter(clock=lambda: 0.0)
    for message in (
        {"method": method, "params": params},
        {"method": "tools/call", "params": {"name": name, "arguments": arguments}},
        {"method": "resources/read", "params": {"uri": arguments}},
    ):
        d = decide(_FUZZ_POLICY, message, limiter, CTX)
        assert (d.outcome is None) == (d.verdict is Verdict.ASK)


def test_redos_shaped_patterns_run_in_linear_time() -> None:
    pol = policy(
        "tool_rules:\n  - {tool: t, action: allow, allow_args: {q: '^(a+)+$', r: '^(a|a)*$'}}"
    )
    evil = "a" * 100_000 + "!"
    start = time.process_time()
    d = run(pol, call("t", q=evil, r=evil))
    assert d.outcome is Outcome.ARGUMENT_INVALID
    assert time.process_time() - start < 0.05  # Python's re takes hours on this
