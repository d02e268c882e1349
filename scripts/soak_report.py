"""What the soak found: the audit log read back (rotated files too), the pass/fail checks and
the markdown report (see scripts/soak.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

KINDS = ("allowed", "blocked", "ask-allow", "ask-deny")


def audit_files(base: Path) -> list[Path]:
    """The log and its rotated files (``aip-audit.jsonl.<seq>``), oldest first."""
    folder = base / "state" / "aip"
    rotated = sorted(q for q in folder.glob("aip-audit.jsonl.*") if q.name[16:].isdigit())
    return [*rotated, folder / "aip-audit.jsonl"]


def audit_records(base: Path) -> list[dict[str, Any]]:
    records = []
    for path in audit_files(base):
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if line.endswith("}"):
                records.append(json.loads(line))
    return records


def verify_chain(base: Path) -> subprocess.CompletedProcess[str]:
    """``aipctl audit verify`` over every file of the log, oldest first."""
    files = [str(q) for q in audit_files(base)]
    return subprocess.run(
        [sys.executable, "-m", "aip.approver.ctl", "audit", "verify", *files],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def checks(r: dict[str, Any]) -> list[str]:
    bad = []
    if r["failures"]:
        bad.append(f"{len(r['failures'])} proxy driver(s) failed: {r['failures'][:3]}")
    if r["unexpected_count"] or r["extra_lines"]:
        bad.append(f"{r['unexpected_count']} unexpected answers, {r['extra_lines']} extra lines")
    if r["audit_missing"] or r["audit_doubled"]:
        bad.append(
            f"audit: {r['audit_missing']} calls without a record, {r['audit_doubled']} with two"
        )
    if not r["chain_verifies"]:
        bad.append(f"audit chain does not verify: {r['chain_verify_output']}")
    if r["dialog_overlaps"] or r["dialogs_doubled"]:
        bad.append(f"dialogs: {r['dialog_overlaps']} overlaps, {r['dialogs_doubled']} doubled")
    if r["dialogs"] != r["asked"]:
        bad.append(f"{r['asked']} asks but {r['dialogs']} dialogs")
    rss = [row["approver_mb"] for row in r["rss"]]
    if len(rss) >= 4:  # flat: the last quarter may not exceed the first quarter by > 50 %
        q = len(rss) // 4
        if max(rss[-q:]) > 1.5 * max(rss[:q]) + 5:
            bad.append(f"approver RSS grew: {rss[:q]} ... {rss[-q:]}")
    return bad


def report(r: dict[str, Any], bad: list[str]) -> str:
    out = [
        f"### Soak: {r['proxies']} proxies x {r['seconds']} s",
        "",
        f"{r['calls']} calls ({', '.join(f'{k} {v}' for k, v in sorted(r['sent'].items()))}); "
        f"{r['dialogs']} dialogs, {r['dialog_overlaps']} overlapping; "
        f"audit: {r['audit_missing']} missing, {r['audit_doubled']} doubled, "
        f"{r['audit_files']} file(s), chain {'verifies' if r['chain_verifies'] else 'BROKEN'}.",
        "",
        "| kind | calls | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for kind in KINDS:
        lat = r["latency_ms"][kind]
        out.append(f"| {kind} | {lat['n']} | {lat['p50']:.2f} | {lat['p99']:.2f} |")
    out += ["", "| t (s) | approver RSS MB | proxy RSS MB (min / median / max of sample) |"]
    out.append("|---|---|---|")
    for row in r["rss"]:
        proxy = "/".join(str(x) for x in row["proxy_mb"]) if row["proxy_mb"] else "-"
        out.append(f"| {row['t']} | {row['approver_mb']} | {proxy} |")
    out += ["", "Result: " + ("PASS" if not bad else "FAIL: " + "; ".join(bad))]
    return "\n".join(out)
