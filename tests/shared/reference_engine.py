"""The policy decision written the straightforward way, as the engine was before issue 16's
fast path (main 6515f79): every call walks the rules, matches every pattern with RE2, expands,
tokenizes and checks every string, and resolves paths with ``os.path.realpath`` itself. No
memo, no plan. tests/shared/policy/test_fast_path.py holds the engine to exactly its answers.

It reuses only the engine's precomputed ``ProtectedRoots`` tables (roots, prefixes, bases,
bare names: built once per policy and Context, and tested on their own) and their pure
lookups ``under``, ``key`` and ``check_bare``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from aip.shared.outcomes import Outcome
from aip.shared.policy import protected
from aip.shared.policy.decision import Context, Decision, Verdict
from aip.shared.policy.engine import WOULD_ASK, _roots, method_allowed
from aip.shared.policy.model import Action, ArgPattern, Mode, Policy, ToolRule
from aip.shared.policy.names import normalize
from aip.shared.policy.protected import ProtectedRoots, TooManyCandidates
from aip.shared.policy.protected_plan import PATH_MAX
from aip.shared.policy.protected_resolve import collapse
from aip.shared.policy.protected_tokens import GLUE, spellings, tokens
from aip.shared.policy.ratelimit import RateLimiter
from aip.shared.policy.regexes import full_match, value_bytes

_MISSING: Final = object()


def decide(
    policy: Policy, message: dict[str, Any], limiter: RateLimiter, context: Context
) -> Decision:
    method = message.get("method")
    if type(method) is not str:
        return _invalid("the message has no method name")
    kind = normalize(method)
    if not method_allowed(policy, kind):
        return Decision(
            Verdict.BLOCK,
            Outcome.METHOD_NOT_ALLOWED,
            detail=f"method {method!r} is not allowed by the policy",
            data={"method": method},
        )
    params = message.get("params")
    if kind == "tools/call":
        return _tool_call(policy, params, limiter, context)
    if kind == "resources/read" and params is not None:
        hit = _protected_hit(policy, context, params, None)
        if hit is not None:
            return hit
    return Decision(Verdict.FORWARD, Outcome.POLICY_ALLOWED, detail="method allowed")


def _tool_call(policy: Policy, params: object, limiter: RateLimiter, context: Context) -> Decision:
    if not isinstance(params, dict):
        return _invalid("tools/call needs params with a tool name")
    name = params.get("name")
    if type(name) is not str:
        return _invalid("tools/call needs a string params.name")
    args = params.get("arguments", {})
    if not isinstance(args, dict):
        return _invalid("tools/call params.arguments must be an object", name)
    tool = normalize(name)
    monitor = policy.mode is Mode.MONITOR
    if not monitor and tool in policy.denied_tools:
        return Decision(
            Verdict.BLOCK,
            Outcome.DENIED_TOOL,
            detail=f"tool {name!r} is in denied_tools",
            tool=name,
        )
    hit = _protected_hit(policy, context, args, name)
    if hit is not None:
        return hit
    decision = authorize(policy, tool, name, args, limiter)
    if monitor and decision.verdict is not Verdict.FORWARD:
        would = WOULD_ASK if decision.outcome is None else decision.outcome
        return Decision(
            Verdict.FORWARD,
            Outcome.POLICY_ALLOWED,
            rule=decision.rule,
            detail=f"monitor mode, enforce would block or ask: {decision.detail}",
            data=decision.data,
            monitor_would=would,
            tool=name,
        )
    return decision


def _protected_hit(
    policy: Policy, context: Context, value: object, tool: str | None
) -> Decision | None:
    try:
        hit = roots_hit(_roots(policy, context), value)
    except TooManyCandidates:
        return Decision(
            Verdict.BLOCK,
            Outcome.PROTECTED_PATH,
            detail="too many path-like values to check; refused",
            tool=tool,
        )
    if hit is None:
        return None
    return Decision(
        Verdict.BLOCK,
        Outcome.PROTECTED_PATH,
        detail=f"{hit[0]!r} is or lies under a protected path",
        tool=tool,
    )


def _invalid(detail: str, tool: str | None = None) -> Decision:
    return Decision(Verdict.BLOCK, Outcome.INVALID_REQUEST, detail=detail, tool=tool)


# ---- authorization (DESIGN §4.4) ----


def authorize(
    policy: Policy, tool: str, name: str, args: dict[str, Any], limiter: RateLimiter
) -> Decision:
    if tool in policy.denied_tools:
        return _block(Outcome.DENIED_TOOL, f"tool {name!r} is in denied_tools", name)
    rules = [r for r in policy.tool_rules if r.tool == tool]  # a scan, in file order
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
    assert first_failure is not None
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


# ---- protected paths (DESIGN §4.5) ----


def _leaves(value: object) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str):
                    yield key
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)


def roots_hit(r: ProtectedRoots, value: object) -> tuple[str, str] | None:
    """``ProtectedRoots.hit`` as it was: candidate by candidate, resolving each."""
    if not r._roots:
        return None
    seen: set[str] = set()
    budget = [protected.MAX_CANDIDATES]
    bare_matters = bool(r._bare or r._bare_prefixes or r.base_hit)
    for leaf in _leaves(value):
        for text in spellings(leaf):
            if not (bare_matters or "/" in text or "~" in text or "$" in text or "%" in text):
                continue
            if ":" in text or "%" in text or GLUE.search(text) is not None:
                found: Iterable[str] = tokens(text)
            else:
                found = (text,)
            for token in found:
                if token in seen:
                    continue
                seen.add(token)
                root = _check(r, token, budget)
                if root is not None:
                    return token, root
    return None


def _check(r: ProtectedRoots, candidate: str, budget: list[int]) -> str | None:
    path = _expand(r, candidate)
    if not path:
        return None
    if path.startswith("/"):
        budget[0] -= 1
        if budget[0] < 0:
            raise TooManyCandidates
        return _check_absolute(r, path)
    if "/" not in path:
        return r.check_bare(path)
    if r.base_hit is not None:
        return r.base_hit
    if r.too_many_bases:
        raise TooManyCandidates
    budget[0] -= len(r.base_pairs)
    if budget[0] < 0:
        raise TooManyCandidates
    for base, real in r.base_pairs:
        shown = r.under(r.key(collapse(os.path.normpath(base + "/" + path))))
        if shown is None:
            shown = _check_absolute(r, real + path)
        if shown is not None:
            return shown
    return None


def _check_absolute(r: ProtectedRoots, joined: str) -> str | None:
    normal = collapse(os.path.normpath(joined))
    shown = r.under(r.key(normal))
    if shown is not None:
        return shown
    if "/.." not in joined or len(joined) > PATH_MAX:
        joined = normal
        if len(joined) > PATH_MAX:
            return None
    return r.under(r.key(_realpath(joined)))


def _realpath(path: str) -> str:
    try:
        return collapse(os.path.realpath(path))
    except (OSError, ValueError):
        return path


def _expand(r: ProtectedRoots, path: str) -> str:
    path = path.split("\x00", 1)[0]
    if path.startswith("/"):
        return path
    if path.startswith("file:"):
        path = unquote(urlsplit(path).path)
    for prefix in ("$HOME", "${HOME}"):
        if path == prefix or path.startswith(prefix + "/"):
            return r.home + path[len(prefix) :]
    if path == "~" or path.startswith("~/"):
        return r.home + path[1:]
    if path.startswith("~"):
        return os.path.expanduser(path)
    return path
