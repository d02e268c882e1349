"""``aipctl audit verify|tail|query``: check the hash chain, follow and search the audit log.

Everything printed is printable ASCII (values are re-escaped, as in the log itself), so a
crafted tool name or argument cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from aip.approver.audit.chain import line_hash, verify_files
from aip.approver.audit.files import chain_files
from aip.approver.ctl import audit_report
from aip.approver.ctl.console import err as _err
from aip.approver.ctl.console import out as _out
from aip.approver.ctl.console import progress
from aip.approver.ctl.log_read import parse_since, records
from aip.shared import paths
from aip.shared.audit.record import ascii_json
from aip.shared.policy.names import normalize

PROGRESS_MIN_BYTES = 16 << 20  # show progress (TTY only) for verifies at least this big
FOLLOW_POLL_S = 0.2
RECORD_EVENTS = ("decision", "dropped_notification", "not_forwarded")


def register(subparsers: Any, help_line: str) -> None:
    audit = subparsers.add_parser("audit", help=help_line)
    sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    verify = sub.add_parser("verify", help="check the hash chain (across rotated files)")
    verify.add_argument("files", nargs="*", type=Path, metavar="FILE", help="oldest first")
    verify.set_defaults(func=cmd_verify)

    tail = sub.add_parser("tail", help="show the newest records, human readable")
    tail.add_argument("file", nargs="?", type=Path, metavar="FILE")
    tail.add_argument("-n", "--lines", type=int, default=10, help="how many (default 10)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    tail.set_defaults(func=cmd_tail)

    query = sub.add_parser("query", help="records matching simple filters")
    query.add_argument("files", nargs="*", type=Path, metavar="FILE")
    query.add_argument("--decision", choices=("allow", "deny"))
    query.add_argument("--reason", help='audit reason ("human approved") or outcome (timeout)')
    query.add_argument("--tool")
    query.add_argument("--agent", help="agent_id")
    query.add_argument("--server")
    query.add_argument("--since", help="ISO time (2026-03-03T16:00Z) or age: 30s, 15m, 2h, 7d")
    query.add_argument("--json", action="store_true", help="print the JSON lines (for jq)")
    query.set_defaults(func=cmd_query)

    audit_report.register(sub)


def _default_files() -> list[Path]:
    return chain_files(paths.default_audit_log())


# --- verify --------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    files: list[Path] = list(args.files) or _default_files()
    if not files:
        _err(f"aipctl audit verify: no audit log at {paths.default_audit_log()}")
        return 1
    for f in files:
        if not f.is_file():
            _err(f"aipctl audit verify: {f}: not a file")
            return 1
    report = verify_files(files, progress=progress("verifying...", PROGRESS_MIN_BYTES))
    for note in report.notes:
        _out(f"note: {_safe(note)}")
    if report.broken is not None:
        b = report.broken
        _out(f"BROKEN: {_safe(b.file)}:{b.line}: {b.why}")
        _out(f"({report.records} records verified before it)")
        return 1
    head = _last_line_hash(files[-1])
    _out(f"OK: {report.records} records in {len(files)} file(s), chain intact")
    _out(f"head: {head}  (keep a copy elsewhere: cutting the newest lines is only")
    _out("detectable against an earlier head)")
    return 0


def _last_line_hash(path: Path) -> str:
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - (1 << 20)))
        last = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return line_hash(last)


# --- tail ----------------------------------------------------------------------------------


def cmd_tail(args: argparse.Namespace) -> int:
    path: Path = args.file or paths.default_audit_log()
    try:
        fh = path.open("rb")
    except OSError as exc:
        _err(f"aipctl audit tail: {exc}")
        return 1
    with fh:
        data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]
        for line in complete.splitlines()[-args.lines :] if args.lines > 0 else []:
            _print_line(line)
        sys.stdout.flush()
        if args.follow:
            fh.seek(len(complete))
            _follow(path, fh)
    return 0


def _drain(fh: Any) -> None:
    """Print the complete lines after the file position and stop at the last newline.
    Bytes after it (a record being written, or a torn tail) are left in the file, not
    buffered here: the approver's torn-tail repair cuts them and appends ``recovered_tail``
    at exactly that offset, which the next read then sees."""
    start = fh.tell()
    data = fh.read()
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        _print_line(line)
    fh.seek(start + end)
    sys.stdout.flush()


def _follow(path: Path, fh: Any) -> None:
    """Print records as they are appended; reopen when the log is rotated."""
    inode = os.fstat(fh.fileno()).st_ino
    while True:
        before = fh.tell()
        _drain(fh)
        if fh.tell() != before:
            continue
        try:
            if os.stat(path).st_ino != inode:  # rotated: drain the old file, open the new
                _drain(fh)
                fh.close()
                fh = path.open("rb")
                inode = os.fstat(fh.fileno()).st_ino
                continue
        except FileNotFoundError:
            pass
        time.sleep(FOLLOW_POLL_S)


def _print_line(line: bytes) -> None:
    _out(_show(line))


def _show(line: bytes) -> str:
    """One line of output for one line of the log; never raises: a line that cannot be read
    or shown is reported as such and the next one is still shown."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return f"[unreadable line: {_safe(line.decode('utf-8', 'replace')[:200])}]"
    if not isinstance(record, dict):
        return f"[not a record: {_safe(line.decode('utf-8', 'replace')[:200])}]"
    try:
        return format_record(record)
    except (orjson.JSONEncodeError, TypeError, ValueError) as exc:
        return f"[record seq={_safe(record.get('seq'))} cannot be shown: {_safe(str(exc))}]"


def _safe(value: Any) -> str:
    """Printable ASCII: strings with anything else are shown as escaped JSON."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    if re.fullmatch(r"[\x20-\x7e]*", text):
        return text
    return ascii_json(orjson.dumps(text)).decode("ascii")


def format_record(r: dict[str, Any]) -> str:
    """One human-readable line per record."""
    ts = _safe(r.get("timestamp", "?"))
    event = r.get("event")
    if event in ("decision", "dropped_notification"):
        what = _safe(r.get("tool") or r.get("method") or "-")
        args = r.get("arguments")
        parts = [
            ts,
            f"{_safe(r.get('decision', '?')):5}",
            f"{_safe(r.get('reason', '?')):28}",
            f"agent={_safe(r.get('agent_id'))}",
            f"server={_safe(r.get('server'))}",
            what if args is None else f"{what} {ascii_json(orjson.dumps(args)).decode()}",
        ]
        hd = r.get("human_decision")
        if isinstance(hd, dict):
            parts.append(f"(human: {_safe(hd.get('response_time_ms'))} ms)")
        if event == "dropped_notification":
            parts.append("[notification dropped]")
        return "  ".join(parts)
    if event == "not_forwarded":
        return (
            f"{ts}  not forwarded: request {_safe(r.get('request_id'))} "
            f"({_safe(r.get('tool'))}): {_safe(r.get('why'))}"
        )
    extra = {k: v for k, v in r.items() if k not in ("timestamp", "event", "seq", "prev")}
    return f"{ts}  [{_safe(event)}] {ascii_json(orjson.dumps(extra)).decode()}"


# --- query ---------------------------------------------------------------------------------


def _record_time(r: dict[str, Any]) -> datetime | None:
    """The record's timestamp, or None when it is not a zoned RFC 3339 time (a foreign or
    hand-edited line: it matches no --since rather than stopping the query)."""
    try:
        ts = datetime.fromisoformat(str(r.get("timestamp")).replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else None


def matches(r: dict[str, Any], args: argparse.Namespace, since: datetime | None) -> bool:
    if r.get("event") not in RECORD_EVENTS:
        return False
    if args.decision and r.get("decision") != args.decision:
        return False
    if args.reason and args.reason not in (r.get("reason"), r.get("outcome")):
        return False
    # Tools are compared as the policy compares them (DESIGN §4.2): a record of "Write_File"
    # is a record of write_file.
    tool = r.get("tool")
    if args.tool is not None and (
        not isinstance(tool, str) or normalize(tool) != normalize(args.tool)
    ):
        return False
    for field, want in (("agent_id", args.agent), ("server", args.server)):
        if want is not None and r.get(field) != want:
            return False
    if since is not None:
        ts = _record_time(r)
        if ts is None or ts < since:
            return False
    return True


def cmd_query(args: argparse.Namespace) -> int:
    files: list[Path] = list(args.files) or _default_files()
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError:
        _err(f"aipctl audit query: --since {args.since!r}: not a time or age")
        return 2
    found = 0
    unreadable: list[str] = []
    try:
        for line, record in records(files, unreadable):
            if matches(record, args, since):
                found += 1
                _out(ascii_json(line).decode("ascii") if args.json else _show(line))
    except OSError as exc:
        _err(f"aipctl audit query: {exc}")
        return 1
    sys.stdout.flush()
    if unreadable:
        _err(f"skipped {len(unreadable)} unreadable line(s): {', '.join(unreadable[:5])}")
    if not args.json:
        _err(f"({found} record(s))")
    return 0
