"""``aipctl policy suggest``: rules that would have decided repeated human approvals, learned
only from what humans approved.

The trap of every policy learner (audit2allow, aa-logprof) is breadth: a rule learned from
rubber-stamped history allows more than anyone approved. So a pattern is built only from
approved values: the exact values (at most ``MAX_EXACT``), or, for paths, the literal prefix
that ends at a separator followed by path components that are never ``.`` or ``..`` (so
``/tmp/build/../../etc`` does not match what was learned from ``/tmp/build/...``). Every rule
gets ``strict_args``. A tool a human denied or let time out in the window, one with a DLP hit
or a protected path, or one asked too few times, gets no allow; a tool only ever denied gets a
``block``. Records are streamed: memory stays flat whatever the log's size.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from aip.shared.policy.literal import folder_pattern, re2_literal
from aip.shared.policy.model import Action, Policy
from aip.shared.policy.names import normalize
from aip.shared.policy.regexes import RegexError, compile_pattern, full_match, value_bytes

WEAK_MS: Final = 1500  # an approval faster than this may be a reflex (approval fatigue)
MAX_EXACT: Final = 5  # more distinct values than this: a prefix, or nothing
MAX_KEPT: Final = 64  # distinct values kept per argument (memory stays flat)
MAX_RESPONSE_TIMES: Final = 4096  # per tool, for the median
MAX_NAMES: Final = 10_000  # raw tool names whose normalized form is remembered
APPROVED, DENIED = "human approved", ("human denied", "human approval timed out")
_UNUSABLE: Final = re.compile(r"\[REDACTED:|\.\.\.\[capped: ")


@dataclass
class _Arg:
    values: dict[bytes, Any] = field(default_factory=dict)  # value_bytes -> value, capped
    overflow: bool = False  # more distinct values than MAX_KEPT
    strings: bool = True
    prefix: str | None = None  # longest common prefix of every string value
    max_slashes: int = 0  # the most separators in one value (depth below the prefix folder)


@dataclass
class ToolEvidence:
    tool: str  # as first seen
    approvals: int = 0
    weak: int = 0
    denials: int = 0
    blocked_dlp_or_path: int = 0
    unusable: int = 0  # approvals whose arguments were redacted or capped in the log
    sessions: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    first: str = ""
    last: str = ""
    response_ms: list[float] = field(default_factory=list)
    args: dict[str, _Arg] = field(default_factory=dict)
    arg_sets: set[frozenset[str]] = field(default_factory=set)
    example: dict[str, Any] | None = None


def relevant(line: bytes) -> bool:
    """A cheap superset test on a raw log line: only asks, DLP hits and protected paths
    matter here, so policy allows (most of a log) are never parsed."""
    return b"human" in line or b"dlp" in line or b"protected" in line or b"secret" in line


class Collector:
    """Per normalized tool, what the decision records at or after ``since`` (RFC 3339) say;
    fed one record at a time so other readers of the same stream (``audit report``) share
    one pass over the log."""

    def __init__(self, since: str | None) -> None:
        self.since = since
        self.tools: dict[str, ToolEvidence] = {}
        self._names: dict[str, str] = {}  # raw -> normalized: NFKC per record dominated a run

    def add(self, r: dict[str, Any]) -> None:
        tool = r.get("tool")
        if r.get("event") != "decision" or not isinstance(tool, str):
            return
        stamp = r.get("timestamp")
        if self.since is not None and (not isinstance(stamp, str) or stamp < self.since):
            return
        name = self._names.get(tool)
        if name is None:
            name = normalize(tool)
            if len(self._names) < MAX_NAMES:
                self._names[tool] = name
        ev = self.tools.setdefault(name, ToolEvidence(tool))
        reason = r.get("reason")
        if r.get("dlp") or reason in ("protected path", "secret in arguments"):
            ev.blocked_dlp_or_path += 1
        if reason in DENIED:
            ev.denials += 1
        elif reason == APPROVED:
            _approval(ev, r, stamp if isinstance(stamp, str) else "")


def collect(records: Iterable[dict[str, Any]], since: str | None) -> dict[str, ToolEvidence]:
    collector = Collector(since)
    for r in records:
        collector.add(r)
    return collector.tools


def _approval(ev: ToolEvidence, r: dict[str, Any], stamp: str) -> None:
    ev.approvals += 1
    ev.sessions.add(str(r.get("session")))
    ev.agents.add(str(r.get("agent_id")))
    ev.first = min(ev.first, stamp) if ev.first else stamp
    ev.last = max(ev.last, stamp)
    human = r.get("human_decision")
    ms = human.get("response_time_ms") if isinstance(human, dict) else None
    if isinstance(ms, int | float):
        if ms < WEAK_MS:
            ev.weak += 1
        if len(ev.response_ms) < MAX_RESPONSE_TIMES:
            ev.response_ms.append(float(ms))
    args = r.get("arguments")
    if not isinstance(args, dict) or any(
        isinstance(v, dict | list) or (isinstance(v, str) and _UNUSABLE.search(v))
        for v in args.values()
    ):
        ev.unusable += 1  # redacted, capped or nested: no exact value to learn from
        return
    ev.arg_sets.add(frozenset(args))
    if ev.example is None:
        ev.example = args
    for key, value in args.items():
        _observe(ev.args.setdefault(key, _Arg()), value)


def _observe(arg: _Arg, value: Any) -> None:
    data = value_bytes(value)
    if data is None:
        arg.overflow = True
        return
    if data in arg.values:
        return  # seen before: the prefix and the depth already cover it
    if len(arg.values) >= MAX_KEPT:
        arg.overflow = True
    else:
        arg.values[data] = value
    if not isinstance(value, str):
        arg.strings = False
        return
    if arg.prefix is None:
        arg.prefix = value
    else:
        n = 0
        for a, b in zip(arg.prefix, value, strict=False):
            if a != b:
                break
            n += 1
        arg.prefix = arg.prefix[:n]
    # Depth is judged against the final prefix (it only shrinks), so it is kept as a count.
    arg.max_slashes = max(arg.max_slashes, value.count("/"))


@dataclass
class Suggestion:
    tool: str
    action: Action
    insert_before: int | None  # index of the ask rule in tool_rules (None: first)
    allow_args: dict[str, str]
    evidence: dict[str, Any]
    match: dict[str, Any] | None = None
    not_match: dict[str, Any] | None = None
    why: str = ""


def _pattern(arg: _Arg) -> tuple[str | None, str]:
    """The narrowest RE2 pattern covering every approved value, and how it was made."""
    exact = [re2_literal(v.decode()) for v in arg.values]
    if not arg.overflow and len(exact) <= MAX_EXACT:
        body = exact[0] if len(exact) == 1 else "(?:" + "|".join(sorted(exact)) + ")"
        return body, f"{len(exact)} exact value(s)"
    if not arg.strings or arg.prefix is None:
        return None, "too many distinct values to list, and not paths"
    cut = arg.prefix.rfind("/") + 1
    if cut <= 1:
        return None, "too many distinct values, and no common folder"
    deep = arg.max_slashes > arg.prefix[:cut].count("/")  # some value has a subfolder
    return folder_pattern(arg.prefix[:cut], deep=deep), f"paths under {arg.prefix[:cut]}"


def _harmful(arg: _Arg) -> Any:
    """A nearby value no human approved that the pattern must refuse."""
    if arg.strings and arg.prefix and "/" in arg.prefix:
        return arg.prefix[: arg.prefix.rfind("/") + 1] + "../../etc/passwd"
    first = next(iter(arg.values.values()))
    return f"{first}; rm -rf ~" if isinstance(first, str) else [first]


def suggest(
    policy: Policy, tools: dict[str, ToolEvidence], min_approvals: int
) -> tuple[list[Suggestion], list[dict[str, str]]]:
    suggestions: list[Suggestion] = []
    skipped: list[dict[str, str]] = []
    for name, ev in sorted(tools.items()):
        ask_rules = [r for r in policy.rules_for(name) if r.action is Action.ASK]
        evidence = _evidence(ev)
        if ev.approvals == 0 and ev.denials >= min_approvals and ask_rules:
            suggestions.append(
                Suggestion(ev.tool, Action.BLOCK, ask_rules[0].index, {}, evidence,
                           why=f"only ever denied ({ev.denials} times), never approved")
            )  # fmt: skip
            continue
        if policy.never_remember(name):  # never learned, as never remembered
            if ev.approvals:
                skipped.append({"tool": ev.tool, "reason": "the policy marks it never to be "
                                "remembered (x-aip-never-remember)"})  # fmt: skip
            continue
        why_not = _why_not(ev, ask_rules, min_approvals)
        if why_not:
            if ev.approvals:
                skipped.append({"tool": ev.tool, "reason": why_not})
            continue
        made = _allow(ev, ask_rules[0].index, evidence)
        if isinstance(made, str):
            skipped.append({"tool": ev.tool, "reason": made})
        else:
            suggestions.append(made)
    return suggestions, skipped


def _why_not(ev: ToolEvidence, ask_rules: list[Any], min_approvals: int) -> str:
    if ev.denials:
        return f"a human denied it or let it time out {ev.denials} time(s) in the window"
    if ev.blocked_dlp_or_path:
        return "a DLP hit or a protected path was involved"
    if not ask_rules:
        return "no ask rule for it in the current policy"
    usable = ev.approvals - ev.unusable
    if usable < min_approvals:
        return f"only {usable} approval(s) with readable arguments (min {min_approvals})"
    if len(ev.arg_sets) != 1:
        return "approved calls named different arguments"
    return ""


def _allow(ev: ToolEvidence, before: int, evidence: dict[str, Any]) -> Suggestion | str:
    allow_args: dict[str, str] = {}
    notes = []
    for key, arg in sorted(ev.args.items()):
        pattern, how = _pattern(arg)
        if pattern is None:
            return f"argument {key!r}: {how}"
        allow_args[key] = pattern
        notes.append(f"{key}: {how}")
    example = ev.example or {}
    harmful = dict(example)
    # The neighbour changes the argument a traversal could abuse: a path-like one first.
    pathlike = [k for k in sorted(allow_args) if "/" in (ev.args[k].prefix or "")]
    first_key = (pathlike or sorted(allow_args) or [""])[0]
    if first_key:
        harmful[first_key] = _harmful(ev.args[first_key])
    # The rule is checked against its own examples: every approved value of the example
    # matches, and the harmful neighbour (one argument changed) does not.
    for key, pattern in allow_args.items():
        try:
            regex = compile_pattern(pattern)
        except RegexError as exc:
            return f"argument {key!r}: the learned pattern does not compile: {exc}"
        for value, wanted in ((example.get(key), True), (harmful.get(key), key != first_key)):
            data = value_bytes(value)
            if (data is not None and full_match(regex, data)) is not wanted:
                return f"argument {key!r}: the learned pattern failed its own examples"
    return Suggestion(ev.tool, Action.ALLOW, before, allow_args, evidence, example, harmful,
                      "; ".join(notes) or "no arguments")  # fmt: skip


def _evidence(ev: ToolEvidence) -> dict[str, Any]:
    return {
        "approvals": ev.approvals,
        "weak_approvals": ev.weak,
        "denials": ev.denials,
        "sessions": len(ev.sessions),
        "agents": sorted(ev.agents)[:10],
        "first": ev.first,
        "last": ev.last,
        "median_response_ms": round(statistics.median(ev.response_ms)) if ev.response_ms else None,
    }
