"""Tool authorization (DESIGN §4.4 steps 1 and 3 to 6) for one ``tools/call``, enforce semantics.

Protected paths (step 2) and monitor mode are applied by ``aip.shared.policy.engine`` around this.
Rules are tried in file order; a rule matches when every ``allow_args`` pattern full-matches
its argument (a missing argument never matches); the first match decides.
"""

from __future__ import annotations

from aip.shared.outcomes import Outcome
from aip.shared.policy.decision import Decision, Verdict
from aip.shared.policy.model import Action, ArgPattern, Policy, ToolRule
from aip.shared.policy.ratelimit import RateLimiter
from aip.shared.policy.regexes import full_match, value_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

_MISSING: Final = object()
# Full-match answers remembered per pattern, by string value (a compiled pattern's answer for
# the same text never changes): bounded in entries and in the length of a value kept, so
# even a policy of 1,000 patterns keeps at most ~64,000 short strings.
MEMO_ENTRIES: Final = 64
MEMO_MAX_CHARS: Final = 128
# Enum members as module constants: an Enum attribute costs ~0.1 us a lookup on 3.11.
_BLOCK: Final = Action.BLOCK
_ASK: Final = Action.ASK
_FORWARD: Final = Verdict.FORWARD
_ALLOWED: Final = Outcome.POLICY_ALLOWED


def authorize(
    policy: Policy, tool: str, name: str, args: dict[str, Any], limiter: RateLimiter
) -> Decision:
    """The enforce-mode decision for tool ``name`` (normalized: ``tool``) with ``args``."""
    if tool in policy.denied_tools:
        return _block(Outcome.DENIED_TOOL, f"tool {name!r} is in denied_tools", name)
    rules = policy.rules_by_tool.get(tool)
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
        # The first ``allow_args`` entry (in file order) that ``args`` fail decides the
        # rule's failure; none failing: the rule matches (inline: one call per rule less).
        for pattern in rule.allow_args:
            value = args.get(pattern.name, _MISSING)
            if value is _MISSING:
                failure = pattern, True
                break
            if type(value) is str:
                ok = pattern.results.get(value)
                if ok is None:
                    ok = _remember(pattern, value)
            else:
                ok = _matches(pattern, value)
            if not ok:
                failure = pattern, False
                break
        else:
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


def _remember(pattern: ArgPattern, value: str) -> bool:
    """Match a string ``value`` and remember the answer (bounded)."""
    ok = _matches(pattern, value)
    if len(value) <= MEMO_MAX_CHARS:
        if len(pattern.results) >= MEMO_ENTRIES:
            pattern.results.clear()  # starts afresh
        pattern.results[value] = ok
    return ok


def _matches(pattern: ArgPattern, value: object) -> bool:
    data = value_bytes(value)
    return data is not None and full_match(pattern.regex, data)


def _apply(
    policy: Policy, rule: ToolRule, name: str, args: dict[str, Any], limiter: RateLimiter
) -> Decision:
    """The matching rule decides: block, strict_args, rate limit, then allow or ask."""
    if rule.action is _BLOCK:
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
    if rule.rate_limit is not None and not limiter.take(rule):  # no limit: take() passes
        return _block(
            Outcome.RATE_LIMITED, f"{rule.label} allows {rule.rate_limit.text}", name, rule
        )
    if rule.action is _ASK:
        return Decision(
            Verdict.ASK,
            None,
            rule=rule,
            detail=f"{rule.label} matched: a human decides",
            token_reserved=rule.rate_limit is not None,
            tool=name,
        )
    return Decision(_FORWARD, _ALLOWED, rule, rule.matched, None, None, False, name)


def _block(outcome: Outcome, detail: str, name: str, rule: ToolRule | None = None) -> Decision:
    return Decision(Verdict.BLOCK, outcome, rule=rule, detail=detail, tool=name)
