"""Tool authorization (DESIGN §4.4 steps 1 and 3 to 6) for one ``tools/call``, enforce semantics.

Protected paths (step 2) and monitor mode are applied by ``aip.shared.policy.engine`` around this.
Rules are tried in file order; a rule matches when every ``allow_args`` pattern full-matches
its argument (a missing argument never matches); the first match decides.
"""

from __future__ import annotations

from typing import Any, Final

from aip.shared.outcomes import Outcome
from aip.shared.policy.decision import Decision, Verdict
from aip.shared.policy.model import Action, ArgPattern, Policy, ToolRule
from aip.shared.policy.ratelimit import RateLimiter
from aip.shared.policy.regexes import full_match, value_bytes

_MISSING: Final = object()


def authorize(
    policy: Policy, tool: str, name: str, args: dict[str, Any], limiter: RateLimiter
) -> Decision:
    """The enforce-mode decision for tool ``name`` (normalized: ``tool``) with ``args``."""
    if tool in policy.denied_tools:
        return _block(Outcome.DENIED_TOOL, f"tool {name!r} is in denied_tools", name)
    rules = policy.rules_for(tool)
    if not rules:
        if tool in policy.allowed_tools:
            return Decision(
                Verdict.FORWARD,
                Outcome.POLICY_ALLOWED,
                detail=f"tool {name!r} is in allowed_tools",
                tool=name,
            )
        return _block(
            Outcome.NOT_ALLOWED, f"tool {name!r} is not in allowed_tools and has no rule", name
        )
    first_failure: tuple[ArgPattern, bool] | None = None
    for rule in rules:
        failure = _first_failure(rule, args)
        if failure is None:
            return _apply(policy, rule, name, args, limiter)
        if first_failure is None:
            first_failure = failure
    assert first_failure is not None  # rules is not empty and none matched
    pattern, missing = first_failure
    what = "is missing" if missing else f"does not match {pattern.pattern!r}"
    return Decision(
        Verdict.BLOCK,
        Outcome.ARGUMENT_INVALID,
        rule=rules[0],
        detail=f"no rule for {name!r} matched: argument {pattern.name!r} {what} ({rules[0].label})",
        data={"argument": pattern.name, "pattern": pattern.pattern},
        tool=name,
    )


def _first_failure(rule: ToolRule, args: dict[str, Any]) -> tuple[ArgPattern, bool] | None:
    """The first ``allow_args`` entry (in file order) that ``args`` fail, and whether missing."""
    for pattern in rule.allow_args:
        value = args.get(pattern.name, _MISSING)
        if value is _MISSING:
            return pattern, True
        data = value_bytes(value)
        if data is None or not full_match(pattern.regex, data):
            return pattern, False
    return None


def _apply(
    policy: Policy, rule: ToolRule, name: str, args: dict[str, Any], limiter: RateLimiter
) -> Decision:
    """The matching rule decides: block, strict_args, rate limit, then allow or ask."""
    if rule.action is Action.BLOCK:
        return _block(Outcome.BLOCKED_BY_RULE, f"{rule.label} matched", name, rule)
    strict = policy.strict_args_default if rule.strict_args is None else rule.strict_args
    if strict:
        for key in args:
            if key not in rule.arg_names:
                return Decision(
                    Verdict.BLOCK,
                    Outcome.STRICT_ARGS,
                    rule=rule,
                    detail=f"argument {key!r} is not declared in {rule.label} (strict_args)",
                    data={"argument": key},
                    tool=name,
                )
    if not limiter.take(rule):
        limit = rule.rate_limit.text if rule.rate_limit else ""
        return _block(Outcome.RATE_LIMITED, f"{rule.label} allows {limit}", name, rule)
    if rule.action is Action.ASK:
        return Decision(
            Verdict.ASK,
            None,
            rule=rule,
            detail=f"{rule.label} matched: a human decides",
            token_reserved=rule.rate_limit is not None,
            tool=name,
        )
    return Decision(
        Verdict.FORWARD,
        Outcome.POLICY_ALLOWED,
        rule=rule,
        detail=f"{rule.label} matched",
        tool=name,
    )


def _block(outcome: Outcome, detail: str, name: str, rule: ToolRule | None = None) -> Decision:
    return Decision(Verdict.BLOCK, outcome, rule=rule, detail=detail, tool=name)
