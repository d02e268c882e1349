"""``aipctl approver status [--json]``: what the running approver is doing right now.

The queue, the connected proxies (agent, server, pid, policy), the dialog on screen and its
deadline, the backend, and the audit log's head (its last record, read from the file). One
``status`` request over the approver's socket; the approver answers only peers of its uid.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Final

import orjson

from aip.approver.ctl.approver_call import round_trip
from aip.approver.ctl.console import err, out, out_json, paint
from aip.approver.dialogs.escape import show_value
from aip.shared import paths
from aip.shared.errors import ConfigError
from aip.shared.protocol.messages import new_nonce
from aip.shared.protocol.status import Status, StatusReply

TIMEOUT_S: Final = 2.0
HEAD_READ_BYTES: Final = 256 * 1024  # a record line is far shorter (values are capped)


def register(actions: Any) -> None:
    """Add ``status`` to the ``aipctl approver`` group (made in ctl.main)."""
    status = actions.add_parser(
        "status",
        help="the running approver: queue, proxies, dialog on screen, backend, audit log head",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--endpoint", help="approver endpoint (else $AIP_APPROVER_ENDPOINT, else the default)"
    )
    status.add_argument(
        "--timeout", type=float, default=TIMEOUT_S, metavar="S", help="wait this long for it"
    )
    status.set_defaults(func=run_status)


def query_status(endpoint: str, timeout_s: float) -> StatusReply | None:
    """One status round trip; None when nothing answered in time."""
    return round_trip(endpoint, Status(ref=new_nonce()), StatusReply, timeout_s)


def audit_head(path: str) -> dict[str, Any] | None:
    """The log's last complete record: seq, event, timestamp and the SHA-256 of its line (the
    ``prev`` the next record will carry). None when the file cannot be read."""
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - HEAD_READ_BYTES))
            tail = fh.read()
    except OSError:
        return None
    lines = tail.split(b"\n")
    complete = lines[:-1]  # after the last newline: empty, or a torn line being written
    if not complete or not complete[-1]:
        return None
    line = complete[-1]
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    return {
        "seq": record.get("seq"),
        "event": record.get("event"),
        "timestamp": record.get("timestamp"),
        "sha256": hashlib.sha256(line).hexdigest(),
    }


def run_status(args: argparse.Namespace) -> int:
    endpoint = args.endpoint or paths.default_endpoint()
    try:
        sock = paths.socket_path(endpoint)
    except ConfigError as exc:
        err(f"aipctl: {exc}")
        return 2
    problem = paths.dir_problem(sock.parent) or paths.socket_problem(sock)
    if problem is not None:
        err(f"no approver at {endpoint}: {problem}")
        err("start one: aip-approver &   (or at login: aipctl approver install)")
        return 1
    try:
        reply = query_status(endpoint, args.timeout)
    except ConfigError as exc:
        err(f"aipctl: {exc}")
        return 1
    if reply is None:
        err(f"no approver answered at {endpoint} within {args.timeout:g} s")
        err("is it running? aipctl doctor says more")
        return 1
    head = audit_head(reply.audit_path)
    if args.json:
        data = dataclasses.asdict(reply)
        for key in ("type", "v", "ref"):
            data.pop(key, None)
        out_json({"endpoint": endpoint, **data, "audit_head": head})
        return 0
    _print(reply, endpoint, head)
    return 0


def _print(r: StatusReply, endpoint: str, head: dict[str, Any] | None) -> None:
    out(f"aip-approver pid {r.pid} at {endpoint}")
    if r.backend:
        out(f"dialogs:  {r.backend} (auto-deny after {r.timeout_s:g} s)")
    else:
        out(f"dialogs:  {paint('none', 'red')}: every ask is denied at once ({r.unavailable})")
    caps = f"caps {r.max_pending_session} per proxy, {r.max_pending} overall"
    out(f"queue:    {r.queued} waiting, {r.pending} pending ({caps})")
    d = r.dialog
    if d is None:
        out("on screen: nothing")
    else:
        out(
            f"on screen: {show_value(d.tool)} for {show_value(d.agent_id)} "
            f"(server {show_value(d.server)}, request {show_value(d.request_id)})"
        )
        out(f"           rule {show_value(d.rule)}; shown at {d.shown_at}")
        out(f"           auto-deny in {d.seconds_left:.0f} s")
    out(f"proxies:  {len(r.proxies)} connected")
    for x in sorted(r.proxies, key=lambda x: (x.server, x.pid)):
        policy = f"{show_value(x.policy.name)} {x.policy.sha256[:12]}"
        out(
            f"  pid {x.pid:<7} agent {show_value(x.agent_id)}  server {show_value(x.server)}  "
            f"policy {policy}  pending {x.pending}"
        )
    state = "writable" if r.audit_available else paint("NOT writable: asks are denied", "red")
    seq = f", seq {r.audit_seq}" if r.audit_seq is not None else ""
    out(f"audit log: {r.audit_path or '(none)'} ({state}{seq})")
    if head is not None:
        out(
            f"  head: seq {head['seq']} {head['event']} at {head['timestamp']} "
            f"sha256 {str(head['sha256'])[:16]}"
        )
    elif r.audit_path and Path(r.audit_path).exists():
        out("  head: (cannot be read)")
