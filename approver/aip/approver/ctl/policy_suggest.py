"""The ``aipctl policy suggest`` command: read the log, print the suggestions, and with
``--apply`` write them into the policy (backup kept, result checked and explained).

Rules are inserted as one flow-style line each just above the ask rule that fired (the first
matching rule decides, so above is the only place they take effect), with a comment naming
the evidence; comments and everything else in the file stay as they are. The new text must
load with exactly the expected rules where expected, else nothing is written.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from aip.approver.audit.files import chain_files
from aip.approver.ctl import safe_files
from aip.approver.ctl.console import err, out
from aip.approver.ctl.log_read import parse_since, records
from aip.approver.ctl.policy_explain import explain
from aip.approver.ctl.suggest import Suggestion, collect, relevant, suggest
from aip.shared import paths
from aip.shared.errors import PolicyError
from aip.shared.policy.load import load_policy, load_policy_text
from aip.shared.policy.model import Action, Policy


def register(actions: Any) -> None:
    sub = actions.add_parser(
        "suggest",
        help="rules that would have decided repeated human approvals (from the audit log)",
        description="Read the audit log (rotated files too) and propose tool_rules built only "
        "from approved values. Nothing changes without --apply.",
    )
    sub.add_argument("--policy", type=Path, help="policy file (default: as aip-proxy finds it)")
    sub.add_argument("--audit", type=Path, nargs="+", metavar="FILE", help="audit log file(s)")
    sub.add_argument("--since", default="30d", help="window: age (30d, 12h) or ISO time")
    sub.add_argument("--min", type=int, default=3, help="approvals needed (default 3)")
    sub.add_argument("--apply", action="store_true", help="write them into the policy")
    sub.set_defaults(func=run_suggest)


def run_suggest(args: argparse.Namespace) -> int:
    policy_path = args.policy or paths.default_policy()
    try:
        policy = load_policy(policy_path)
        since = parse_since(args.since)
    except PolicyError as exc:
        err(f"aipctl policy suggest: {exc}")
        return 1
    except ValueError:
        err(f"aipctl policy suggest: --since {args.since!r}: not a time or age")
        return 2
    files = list(args.audit) if args.audit else chain_files(paths.default_audit_log())
    unreadable: list[str] = []
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    try:
        tools = collect((r for _, r in records(files, unreadable, relevant)), stamp)
    except OSError as exc:
        err(f"aipctl policy suggest: {exc}")
        return 1
    if unreadable:
        err(f"skipped {len(unreadable)} unreadable line(s): {', '.join(unreadable[:5])}")
    found, skipped = suggest(policy, tools, max(1, args.min))
    out(f"# aipctl policy suggest --since {args.since} --policy {policy_path}")
    out(f"# {len(files)} audit file(s); policy {policy.name!r} sha256:{policy.sha256[:12]}")
    out("# Review each rule: the first matching rule wins; each goes just above its ask rule.")
    out(yaml.safe_dump(_document(found, skipped), sort_keys=False, width=100).rstrip())
    if not args.apply or not found:
        return 0
    return _apply(policy, Path(policy_path), found)


def _rule(s: Suggestion) -> dict[str, Any]:
    rule: dict[str, Any] = {"tool": s.tool, "action": s.action.value}
    if s.action is Action.ALLOW:
        rule["strict_args"] = True
        if s.allow_args:
            rule["allow_args"] = dict(s.allow_args)
    return rule


def _document(found: list[Suggestion], skipped: list[dict[str, str]]) -> dict[str, Any]:
    items = []
    for n, s in enumerate(found, 1):
        item: dict[str, Any] = {"id": f"s{n}", "insert_before": f"tool_rules[{s.insert_before}]"}
        item["rule"] = _rule(s)
        if s.match is not None:
            item["tests"] = {"match": s.match, "not_match": s.not_match}
        weak = s.evidence["weak_approvals"]
        item["evidence"] = s.evidence
        if weak:
            item["weak_evidence"] = f"{weak} approval(s) answered in under 1.5 s"
        item["generalised"] = s.why
        items.append(item)
    return {"suggestions": items, "skipped": skipped}


def _apply(policy: Policy, path: Path, found: list[Suggestion]) -> int:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    by_index = {r.index: r for r in policy.tool_rules}
    for s in sorted(found, key=lambda s: s.insert_before or 0, reverse=True):
        ask = by_index[s.insert_before or 0]
        at = ask.line - 1
        indent = lines[at][: len(lines[at]) - len(lines[at].lstrip(" "))]
        flow = yaml.safe_dump(_rule(s), default_flow_style=True, width=1 << 20).strip()
        ev = s.evidence
        lines[at:at] = [
            f"{indent}# suggested {day}: {ev['approvals']} approvals in {ev['sessions']} "
            f"session(s), 0 denials ({s.why})\n",
            f"{indent}- {flow}\n",
        ]
    new_text = "".join(lines)
    try:
        new = load_policy_text(new_text, str(path))
    except PolicyError as exc:
        err(f"aipctl policy suggest: the edited policy does not load, nothing written:\n{exc}")
        return 1
    if len(new.tool_rules) != len(policy.tool_rules) + len(found):
        err("aipctl policy suggest: this policy layout cannot be edited safely; nothing written")
        return 1
    try:
        backup = safe_files.backup_copy(path)
        safe_files.atomic_replace(path, new_text.encode("utf-8"))
    except OSError as exc:
        err(f"aipctl policy suggest: {path}: not written: {exc}")
        return 1
    out(f"# wrote {path} (backup: {backup}); policy check: OK")
    for s in found:
        if s.match is None:
            continue
        for label, call in (("approved call", s.match), ("harmful neighbour", s.not_match)):
            result = explain(new, s.tool, call or {}, os.getcwd())
            out(f"# {s.tool} {label}: {result.enforce['summary']}")
    return 0
