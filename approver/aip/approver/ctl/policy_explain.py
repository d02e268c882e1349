"""``aipctl policy explain``: why a policy decides a tools/call the way it does, step by step.

The verdict always comes from ``aip.shared.policy.engine.decide`` (the proxy's own code) for both
modes; the steps only retrace DESIGN §4.4 for the reader, pattern by pattern, so the
explanation can never disagree with what the proxy does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aip.shared import slotclass
from aip.shared.outcomes import Outcome, row
from aip.shared.policy.always_protected import always_protected
from aip.shared.policy.decision import Context, Decision, Verdict
from aip.shared.policy.engine import decide
from aip.shared.policy.model import Action, Mode, Policy, ToolRule
from aip.shared.policy.names import normalize
from aip.shared.policy.ratelimit import RateLimiter
from aip.shared.policy.regexes import value_bytes


@dataclass(slots=True)
class Explanation:
    steps: list[str] = field(default_factory=list)
    enforce: dict[str, Any] = field(default_factory=dict)
    monitor: dict[str, Any] = field(default_factory=dict)
    deciding_rule: str | None = None


def explain(policy: Policy, tool: str, args: dict[str, Any], cwd: str) -> Explanation:
    # DESIGN §4.5, built as the proxy builds it (aip.proxy.protection): the policy file, the
    # aip state and runtime dirs, the default audit log with its HMAC key and spool.
    context = Context(cwd=cwd, always_protected=always_protected(policy.path))
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    message["params"] = {"name": tool, "arguments": args}
    enforce = decide(slotclass.replace(policy, mode=Mode.ENFORCE), message, RateLimiter(), context)
    monitor = decide(slotclass.replace(policy, mode=Mode.MONITOR), message, RateLimiter(), context)
    result = Explanation(steps=_steps(policy, tool, args, enforce))
    result.enforce = _describe(enforce)
    result.monitor = _describe_monitor(monitor)
    result.deciding_rule = enforce.rule.label if enforce.rule else None
    return result


def _steps(policy: Policy, tool: str, args: dict[str, Any], decision: Decision) -> list[str]:
    norm = normalize(tool)
    steps = [
        "method tools/call: allowed"
        if decision.outcome is not Outcome.METHOD_NOT_ALLOWED
        else "method tools/call: not allowed by allowed_methods/denied_methods; stop"
    ]
    if decision.outcome is Outcome.METHOD_NOT_ALLOWED:
        return steps
    shown = f"{tool!r}" + (f" (normalized {norm!r})" if norm != tool else "")
    steps.append(f"tool {shown}")
    if norm in policy.denied_tools:
        steps.append("denied_tools: listed; stop (denied_tool)")
        return steps
    steps.append("denied_tools: not listed")
    if decision.outcome is Outcome.PROTECTED_PATH:
        steps.append(f"protected paths: {decision.detail}; stop")
        return steps
    steps.append("protected paths: no argument is or lies under a protected path")
    rules = policy.rules_for(norm)
    if not rules:
        listed = norm in policy.allowed_tools
        steps.append(
            "tool_rules: none for this tool; allowed_tools: "
            + ("listed, so allowed" if listed else "not listed, so blocked (not_allowed)")
        )
        return steps
    steps.append(f"tool_rules: {len(rules)} rule(s) for this tool, tried in file order")
    for rule in rules:
        matched, lines = _rule_trace(rule, args)
        verdict = "MATCHES: this rule decides" if matched else "does not match"
        steps.append(f"  {rule.label}, line {rule.line}: {verdict}")
        steps += [f"    {line}" for line in lines]
        if matched:
            steps += _after_match(policy, rule, args)
            return steps
    steps.append("  no rule matched: blocked (argument_invalid)")
    return steps


def _rule_trace(rule: ToolRule, args: dict[str, Any]) -> tuple[bool, list[str]]:
    if not rule.allow_args:
        return True, ["no allow_args: matches every call"]
    lines = []
    for pattern in rule.allow_args:
        if pattern.name not in args:
            lines.append(f"{pattern.name}: missing (a missing argument never matches)")
            return False, lines
        data = value_bytes(args[pattern.name])
        ok = data is not None and pattern.regex.fullmatch(data) is not None
        shown = data.decode("utf-8", "replace") if data is not None else repr(args[pattern.name])
        verb = "full-matches" if ok else "does not full-match"
        lines.append(f"{pattern.name}: {shown!r} {verb} {pattern.pattern!r}")
        if not ok:
            return False, lines
    return True, lines


def _after_match(policy: Policy, rule: ToolRule, args: dict[str, Any]) -> list[str]:
    if rule.action is Action.BLOCK:
        return ["  action block: blocked (blocked_by_rule)"]
    lines = []
    strict = policy.strict_args_default if rule.strict_args is None else rule.strict_args
    if strict:
        extra = sorted(set(args) - rule.arg_names)
        lines.append(
            "  strict_args: " + (f"undeclared {extra}: blocked (strict_args)" if extra else "ok")
        )
        if extra:
            return lines
    if rule.rate_limit is not None:
        lines.append(f"  rate_limit {rule.rate_limit.text}: a fresh proxy has tokens")
    lines.append(
        "  action ask: a human decides in a dialog"
        if rule.action is Action.ASK
        else "  action allow: forwarded"
    )
    return lines


def _describe(decision: Decision) -> dict[str, Any]:
    if decision.verdict is Verdict.ASK:
        asked = row(Outcome.DENIED_BY_USER)
        timed_out = row(Outcome.TIMEOUT)
        return {
            "verdict": "ask",
            "summary": 'asks a human: Allow forwards it (audit reason "human approved"); Deny '
            f"answers {asked.code} {asked.message!r}; no answer in time answers "
            f"{timed_out.code} {timed_out.message!r}",
            "detail": decision.detail,
        }
    assert decision.outcome is not None
    r = row(decision.outcome)
    if decision.verdict is Verdict.FORWARD:
        summary = f"forwarded to the server (audit reason {r.audit_reason!r})"
    else:
        summary = f"blocked: error {r.code} {r.message!r} (reason {decision.outcome.value})"
    return {
        "verdict": decision.verdict.value,
        "outcome": decision.outcome.value,
        "code": r.code,
        "message": r.message,
        "audit_reason": r.audit_reason,
        "summary": summary,
        "detail": decision.detail,
    }


def _describe_monitor(decision: Decision) -> dict[str, Any]:
    described = _describe(decision)
    would = decision.monitor_would
    if would is not None:
        described["would"] = str(would)
        described["summary"] = (
            "forwarded without a dialog and audited with decision allow, reason monitor, "
            f"monitor.would = {would}"
        )
    return described
