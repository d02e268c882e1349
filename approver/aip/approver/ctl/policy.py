"""``aipctl policy check|explain``: validate a policy file, and show how it decides a call.

``check`` prints every load error at once (file:line: key: message) plus warnings about valid
but risky rules; exit 1 on errors, else 0. ``explain`` runs the proxy's own engine on one
tools/call and retraces its steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any

from aip.approver.ctl import policy_suggest
from aip.approver.ctl.console import err, out, out_json, paint
from aip.approver.ctl.policy_explain import explain
from aip.approver.ctl.policy_lint import lint
from aip.approver.ctl.policy_server import ProbeError, judge, probe
from aip.shared.errors import PolicyError
from aip.shared.policy.file import check_policy_file_safety
from aip.shared.policy.load import load_policy, load_policy_text
from aip.shared.policy.model import Policy


def register(groups: Any, help_line: str) -> None:
    group = groups.add_parser("policy", help=help_line)
    group.set_defaults(func=lambda _args: group.print_help(sys.stderr) or 2)
    actions = group.add_subparsers(dest="action", metavar="ACTION")

    check = actions.add_parser(
        "check",
        help="validate policy files: all errors with line numbers, plus warnings",
        description="Validate each FILE ('-' reads standard input). Exit 1 when a file has "
        "errors; warnings alone exit 0.",
    )
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument(
        "--server",
        metavar="CMD",
        help='also start this MCP server (one quoted command line, e.g. "npx -y '
        '@modelcontextprotocol/server-everything") and show which of its capabilities and '
        "tools the policy would block (one FILE only)",
    )
    check.add_argument(
        "--server-timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long --server may take to answer (default 15)",
    )
    check.set_defaults(func=run_check)

    why = actions.add_parser(
        "explain",
        help="which rule decides a tools/call, and what enforce and monitor mode do",
        description="Example: aipctl policy explain p.yaml --tool write_file "
        '--args \'{"path": "/etc/hosts"}\'',
    )
    why.add_argument("file", metavar="FILE")
    why.add_argument("--tool", required=True, help="tool name as the agent sends it")
    why.add_argument("--args", default="{}", metavar="JSON", help="arguments object (JSON)")
    why.add_argument("--cwd", default=None, help="the MCP server's working directory")
    why.add_argument("--json", action="store_true", help="machine-readable output")
    why.set_defaults(func=run_explain)
    policy_suggest.register(actions)


def _load(source: str) -> tuple[Policy | None, list[dict[str, Any]]]:
    """The policy (if its content loads) and every problem: file safety, as the proxy checks
    it, and content. The proxy would refuse the file when the list is not empty."""
    errors: list[dict[str, Any]] = []
    try:
        if source == "-":
            return load_policy_text(sys.stdin.read(), "<stdin>"), []
        try:
            check_policy_file_safety(source)
        except PolicyError as exc:  # report it, and still show every content problem
            errors += _problems(exc)
        policy = load_policy(source, check_safety=False)
    except PolicyError as exc:
        return None, _dedupe(errors + _problems(exc))
    return policy, errors


def _problems(exc: PolicyError) -> list[dict[str, Any]]:
    return [
        {"line": p.line, "key": p.key_path, "message": p.message, "text": p.render(exc.source)}
        for p in exc.problems
    ]


def _dedupe(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    unique: dict[str, dict[str, Any]] = {}
    for e in errors:
        unique.setdefault(e["text"], e)
    return list(unique.values())


def run_check(args: argparse.Namespace) -> int:
    if args.server is not None and len(args.files) != 1:
        err("aipctl policy check: --server takes exactly one policy FILE")
        return 2
    reports = []
    for source in args.files:
        policy, errors = _load(source)
        findings = lint(policy) if policy is not None else []
        reports.append((source, policy, errors, findings))
    offer: dict[str, Any] | None = None
    if args.server is not None and reports[0][1] is not None:
        try:
            command = shlex.split(args.server)
            if not command:
                raise ProbeError("--server needs a command")
            offer = judge(reports[0][1], probe(command, args.server_timeout))
        except (ValueError, ProbeError) as exc:
            err(f"aipctl policy check --server: {exc}")
            return 1
    if args.json:
        data = [_json_report(*r) for r in reports]
        if offer is not None:
            data[0]["server"] = offer
        out_json(data)
    else:
        for report in reports:
            _print_report(*report)
        if offer is not None:
            _print_offer(offer)
    return 1 if any(r[2] for r in reports) else 0


def _print_offer(offer: dict[str, Any]) -> None:
    out(f"server {offer['server']} (protocol {offer['protocol']}) through this policy:")
    for name, cap in offer["capabilities"].items():
        blocked = cap["blocked"]
        if not blocked:
            out(f"  {name:11} allowed")
            continue
        state = "BLOCKED" if len(blocked) == len(cap["methods"]) else "partly blocked"
        out(f"  {name:11} {paint(state, 'yellow')}: {', '.join(blocked)}")
    for tool in offer["tools"]:
        state = "hidden from tools/list, every call blocked" if not tool["listed"] else "listed"
        if tool["listed"] and tool["asks"]:
            state += " (asks a human)"
        out(f"  tool {tool['name']}: {state}")
    if offer["allow_line"]:
        out("to allow the blocked methods, put this line in the policy's spec:")
        out(f"  {offer['allow_line']}")


def _json_report(
    source: str, policy: Policy | None, errors: list[dict[str, Any]], findings: list[Any]
) -> dict[str, Any]:
    return {
        "file": source,
        "valid": not errors,
        "policy": None
        if policy is None
        else {"name": policy.name, "mode": policy.mode.value, "sha256": policy.sha256},
        "errors": [{k: e[k] for k in ("line", "key", "message")} for e in errors],
        "warnings": [
            {"line": f.line, "code": f.code, "severity": f.severity, "message": f.message}
            for f in findings
        ],
    }


def _print_report(
    source: str, policy: Policy | None, errors: list[dict[str, Any]], findings: list[Any]
) -> None:
    for e in errors:
        out(f"{e['text']}")
    for f in findings:
        where = f"{source}:{f.line}" if f.line else source
        label = paint(f.severity, "yellow" if f.severity == "warning" else "dim")
        out(f"{where}: {label}: {f.message}")
    if errors:
        err(
            paint(f"{source}: {len(errors)} error(s); the proxy would refuse it", "red", sys.stderr)
        )
    else:
        assert policy is not None
        warnings = sum(f.severity == "warning" for f in findings)
        summary = f"{source}: OK: policy {policy.name!r}, {policy.mode.value} mode"
        out(summary + (f", {warnings} warning(s)" if warnings else ""))


def run_explain(args: argparse.Namespace) -> int:
    try:
        call_args = json.loads(args.args)
    except json.JSONDecodeError as exc:
        err(f"--args is not JSON: {exc}")
        return 2
    if not isinstance(call_args, dict):
        err('--args must be a JSON object, e.g. \'{"path": "/tmp/x"}\'')
        return 2
    policy, errors = _load(args.file)
    if policy is None or errors:
        for e in errors:
            err(e["text"])
        err(f"fix the policy first: aipctl policy check {args.file}")
        return 1
    result = explain(policy, args.tool, call_args, args.cwd or os.getcwd())
    if args.json:
        out_json(
            {
                "policy": {"name": policy.name, "file": policy.path, "mode": policy.mode.value},
                "tool": args.tool,
                "arguments": call_args,
                "steps": result.steps,
                "rule": result.deciding_rule,
                "enforce": result.enforce,
                "monitor": result.monitor,
            }
        )
        return 0
    out(f"policy {policy.name!r} ({policy.path or args.file}), spec.mode {policy.mode.value}")
    out(f"call: tools/call {args.tool} {json.dumps(call_args, ensure_ascii=False)}")
    out("")
    for n, step in enumerate(result.steps, 1):
        out(step if step.startswith(" ") else f"{n}. {step}")
    out("")
    mark = " (this file)" if policy.mode.value == "enforce" else ""
    out(f"{paint('enforce mode', 'bold')}{mark}: {result.enforce['summary']}")
    mark = " (this file)" if policy.mode.value == "monitor" else ""
    out(f"{paint('monitor mode', 'bold')}{mark}: {result.monitor['summary']}")
    return 0
