"""The ``aipctl audit report`` command: one pass over the log, then text or one HTML page."""

from __future__ import annotations

import argparse
from datetime import UTC
from pathlib import Path
from typing import Any

from aip.approver.audit.files import chain_files
from aip.approver.ctl.console import err, out
from aip.approver.ctl.log_read import parse_since
from aip.approver.ctl.report import gather, text_lines
from aip.approver.ctl.report_html import ChartsUnavailable, write_html
from aip.shared import paths


def register(sub: Any) -> None:
    report = sub.add_parser("report", help="what happened: asks, response times, outcomes")
    report.add_argument("files", nargs="*", type=Path, metavar="FILE")
    report.add_argument("--since", default="7d", help="window: age (7d, 12h) or ISO time")
    report.add_argument("--policy", type=Path, help="for the suggestions (default: yours)")
    kind = report.add_mutually_exclusive_group()
    kind.add_argument("--html", type=Path, metavar="FILE", help="write one self-contained page")
    kind.add_argument("--text", action="store_true", help="print the figures (the default)")
    report.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except ValueError:
        err(f"aipctl audit report: --since {args.since!r}: not a time or age")
        return 2
    files = list(args.files) or chain_files(paths.default_audit_log())
    policy = args.policy or paths.default_policy()
    try:
        figures = gather(files, since, policy if policy.exists() else None)
    except OSError as exc:
        err(f"aipctl audit report: {exc}")
        return 1
    if args.html is not None:
        try:
            write_html(figures, args.html)
        except (OSError, ChartsUnavailable) as exc:
            err(f"aipctl audit report: {args.html}: {exc}")
            return 1
        out(f"wrote {args.html}")
        return 0
    for line in text_lines(figures):
        out(line)
    return 0
