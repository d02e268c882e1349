"""Pure policy decision (DESIGN §4): decide(policy, message, limiter, context) -> Decision.

Order: method check (§4.6); then, for a normalized ``tools/call``, the tool decision of §4.4
(denied_tools -> protected_paths -> ordered tool_rules, first match wins -> allowed_tools);
monitor mode (§4.8) relaxes only tool authorization. The only state touched is the rate
limiter's. ``filter_tools_list`` applies §4.7 to a tools/list result.
"""

from __future__ import annotations

from aip.shared.outcomes import Outcome
from aip.shared.policy.authorize import authorize
from aip.shared.policy.decision import Context, Decision, Verdict
from aip.shared.policy.model import ALWAYS_ALLOWED_METHODS, DEFAULT_METHODS, Action, Mode, Policy
from aip.shared.policy.names import normalize
from aip.shared.policy.protected import ProtectedRoots, TooManyCandidates
from aip.shared.policy.ratelimit import RateLimiter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

TOOLS_CALL: Final = "tools/call"
RESOURCES_READ: Final = "resources/read"
WOULD_ASK: Final = "ask"  # Decision.monitor_would when enforce mode would have asked
MAX_MEMO_CONTEXTS: Final = 16  # protected-path roots kept per policy, one per Context
# Enum members as module constants: an Enum attribute costs ~0.1 us a lookup on 3.11.
_MONITOR: Final = Mode.MONITOR
_FORWARD: Final = Verdict.FORWARD


def decide(
    policy: Policy, message: dict[str, Any], limiter: RateLimiter, context: Context
) -> Decision:
    """The decision for one client -> server message that has a ``method`` (DESIGN §4.3)."""
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
    if kind == TOOLS_CALL:
        return _tool_call(policy, params, limiter, context)
    if kind == RESOURCES_READ and params is not None:
        hit = _protected_hit(policy, context, params, None)
        if hit is not None:
            return hit
    # A fresh Decision each time: ``data`` is a dict a caller may add to.
    return Decision(Verdict.FORWARD, Outcome.POLICY_ALLOWED, detail="method allowed")


def method_allowed(policy: Policy, kind: str) -> bool:
    """§4.6 on a normalized method name. A ``*`` in denied_methods denies every method but
    the lifecycle ones, which only go when named there."""
    denied = policy.denied_methods
    if kind in denied:
        return False
    if kind in ALWAYS_ALLOWED_METHODS:
        return True
    if "*" in denied:
        return False
    allowed = DEFAULT_METHODS if policy.allowed_methods is None else policy.allowed_methods
    return kind in allowed or "*" in allowed


def _tool_call(policy: Policy, params: object, limiter: RateLimiter, context: Context) -> Decision:
    if not isinstance(params, dict):
        return _invalid("tools/call needs params with a tool name")
    name = params.get("name")
    if type(name) is not str:
        return _invalid("tools/call needs a string params.name")
    args = params.get("arguments", {})  # absent: no arguments; null is not an object
    if not isinstance(args, dict):
        return _invalid("tools/call params.arguments must be an object", name)
    tool = normalize(name)
    monitor = policy.mode is _MONITOR
    if not monitor and tool in policy.denied_tools:
        return Decision(
            Verdict.BLOCK,
            Outcome.DENIED_TOOL,
            detail=f"tool {name!r} is in denied_tools",
            tool=name,
        )
    hit = _protected_hit(policy, context, args, name)
    if hit is not None:  # enforced in monitor mode too
        return hit
    decision = authorize(policy, tool, name, args, limiter)
    if monitor and decision.verdict is not _FORWARD:
        # Forwarded without a dialog; an ask's token stays spent because the call goes on.
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
    last = policy.memo.get("last_roots")  # a session passes the same Context each time
    roots = last[1] if last is not None and last[0] is context else _roots(policy, context)
    try:
        hit = roots.hit(value)
    except TooManyCandidates:
        return Decision(
            Verdict.BLOCK,
            Outcome.PROTECTED_PATH,
            detail="too many path-like values to check; refused",
            tool=tool,
        )
    if hit is None:
        return None
    candidate, _root = hit
    return Decision(
        Verdict.BLOCK,
        Outcome.PROTECTED_PATH,
        # The protected root itself is not named: the detail may reach the agent.
        detail=f"{candidate!r} is or lies under a protected path",
        tool=tool,
    )


def _roots(policy: Policy, context: Context) -> ProtectedRoots:
    key = ("protected", context)
    roots = policy.memo.get(key)
    if roots is None:
        # A Context per roots/list answer or welcome: keep the memo bounded (oldest out).
        old = [k for k in policy.memo if isinstance(k, tuple) and k[0] == "protected"]
        for stale in old[: max(0, len(old) - MAX_MEMO_CONTEXTS + 1)]:
            del policy.memo[stale]
        paths = [*policy.protected_paths, *context.always_protected]
        if policy.path:
            paths.append(policy.path)  # the policy file itself, whoever built the Context
        roots = policy.memo[key] = ProtectedRoots(paths, context.cwd, bases=context.bases)
    policy.memo["last_roots"] = (context, roots)
    return roots


def _invalid(detail: str, tool: str | None = None) -> Decision:
    return Decision(Verdict.BLOCK, Outcome.INVALID_REQUEST, detail=detail, tool=tool)


def filter_tools_list(policy: Policy, result: dict[str, Any]) -> dict[str, Any] | None:
    """§4.7: the tools/list ``result`` without the tools the policy never lets through.

    None when nothing changes (monitor mode, nothing removed, no ``tools`` list), so the
    caller can relay the original bytes untouched.
    """
    if policy.mode is Mode.MONITOR:
        return None
    tools = result.get("tools")
    if not isinstance(tools, list):
        return None
    kept = [t for t in tools if _listed(policy, t)]
    if len(kept) == len(tools):
        return None
    return {**result, "tools": kept}


def _listed(policy: Policy, entry: object) -> bool:
    if not isinstance(entry, dict) or type(entry.get("name")) is not str:
        return False  # nothing a client could call by name
    tool = normalize(entry["name"])
    if tool in policy.denied_tools:
        return False
    rules = policy.rules_for(tool)
    if rules:
        return any(r.action is not Action.BLOCK for r in rules)
    return tool in policy.allowed_tools
