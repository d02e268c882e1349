"""``aipctl audit report``: the figures a user should look at after a week of use.

One streaming pass over the central log (rotated files too) fills fixed-size counters:
asks per day per agent, the distribution of human response times, outcomes per tool, the
share of approvals answered faster than a human can read (the approval-fatigue signal),
remembered decisions used, and the top ``policy suggest`` items, fed from the same pass.
Memory is bounded by the number of days, agents and tools, not by the log's length.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aip.approver.ctl.console import err
from aip.approver.ctl.log_read import records
from aip.approver.ctl.suggest import WEAK_MS, Collector, Suggestion, suggest
from aip.shared.errors import PolicyError
from aip.shared.policy.load import load_policy

# Response-time buckets, upper bounds in ms (the last is open-ended).
BUCKETS: Final = ((500, "<0.5s"), (1000, "0.5-1s"), (1500, "1-1.5s"), (3000, "1.5-3s"),
                  (5000, "3-5s"), (10000, "5-10s"), (30000, "10-30s"), (None, ">30s"))  # fmt: skip
OUTCOMES: Final = ("allowed", "denied", "timed out", "unavailable")
# Reasons of decisions that were asks, with or without a dialog the human answered.
ASK_REASONS: Final = ("human ", "approval unavailable")
MAX_KEYS: Final = 10_000  # distinct agents or tools counted; the rest go to "(other)"


@dataclass
class Figures:
    since: str
    records: int = 0
    unreadable: int = 0
    asks_per_day: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    response: Counter[str] = field(default_factory=Counter)
    per_tool: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    approvals: int = 0
    fast_approvals: int = 0
    granted: int = 0  # decisions made by a remembered decision (``granted_by``)
    suggestions: list[Suggestion] = field(default_factory=list)

    @property
    def fatigue_share(self) -> float:
        return self.fast_approvals / self.approvals if self.approvals else 0.0


def _bounded(key: str, table: dict[str, Any]) -> str:
    return key if key in table or len(table) < MAX_KEYS else "(other)"


def _outcome(r: dict[str, Any]) -> str:
    reason = str(r.get("reason", ""))
    if r.get("decision") == "allow":
        return "allowed"
    if reason == "human approval timed out":
        return "timed out"
    if reason.startswith("approval unavailable"):
        return "unavailable"
    return "denied"


def gather(files: list[Path], since: str, policy_path: Path | None) -> Figures:
    figures = Figures(since)
    learner = Collector(since)
    unreadable: list[str] = []
    for _, r in records(files, unreadable):
        if r.get("event") != "decision":
            continue
        stamp = r.get("timestamp")
        if not isinstance(stamp, str) or stamp < since:
            continue
        figures.records += 1
        learner.add(r)
        tool = str(r.get("tool") or r.get("method") or "-")
        figures.per_tool[_bounded(tool, figures.per_tool)][_outcome(r)] += 1
        if r.get("granted_by") or r.get("denied_by_grant"):
            figures.granted += 1
        human = r.get("human_decision")
        reason = str(r.get("reason", ""))
        if not isinstance(human, dict) and not reason.startswith(ASK_REASONS):
            continue
        agent = str(r.get("agent_id") or "-")
        day = stamp[:10]
        figures.asks_per_day[day][_bounded(agent, figures.asks_per_day[day])] += 1
        if not isinstance(human, dict):
            continue  # asked, but no dialog answered (timed out, approver unavailable)
        ms = human.get("response_time_ms")
        if isinstance(ms, int | float):
            label = next(name for limit, name in BUCKETS if limit is None or ms < limit)
            figures.response[label] += 1
            if human.get("approved") is True:
                figures.approvals += 1
                figures.fast_approvals += ms < WEAK_MS
    figures.unreadable = len(unreadable)
    if policy_path is not None:
        try:
            figures.suggestions = suggest(load_policy(policy_path), learner.tools, 3)[0][:5]
        except PolicyError as exc:
            err(f"aipctl audit report: no suggestions: {exc}")
    return figures


def text_lines(f: Figures) -> list[str]:
    lines = [f"audit report since {f.since}Z: {f.records} decisions"]
    if f.unreadable:
        lines.append(f"({f.unreadable} unreadable line(s) skipped)")
    lines.append("")
    lines.append("asks per day per agent:")
    for day in sorted(f.asks_per_day):
        agents = ", ".join(f"{a} {n}" for a, n in f.asks_per_day[day].most_common())
        lines.append(f"  {day}  {agents}")
    lines.append("")
    lines.append("human response times:")
    total = sum(f.response.values()) or 1
    for _, label in BUCKETS:
        n = f.response[label]
        lines.append(f"  {label:>7} {n:6d} {'#' * round(40 * n / total)}")
    lines.append(
        f"approvals answered in under 1.5 s: {f.fast_approvals} of {f.approvals} "
        f"({100 * f.fatigue_share:.0f}%)"
        + ("  <- approval fatigue: read before you allow" if f.fatigue_share >= 0.3 else "")
    )
    lines.append("")
    lines.append(f"{'tool':30} " + " ".join(f"{o:>11}" for o in OUTCOMES))
    for tool, counts in sorted(f.per_tool.items(), key=lambda kv: -sum(kv[1].values()))[:30]:
        lines.append(f"{tool[:30]:30} " + " ".join(f"{counts[o]:11d}" for o in OUTCOMES))
    lines.append("")
    lines.append(f"remembered decisions used: {f.granted}")
    lines.append("policy suggest, top items (aipctl policy suggest shows them in full):")
    for s in f.suggestions:
        lines.append(f"  {s.action.value} {s.tool}: {s.evidence['approvals']} approvals; {s.why}")
    if not f.suggestions:
        lines.append("  none")
    return lines
