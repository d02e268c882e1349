"""``aipctl doctor``: one screen on whether asks can reach a human on this desktop.

Approver running and answering, start-up installed, dialog backend and display, socket and
directory permissions, audit log place and hash chain, and the policy a given ``aip-proxy``
command line would load. Every problem names the command that fixes it. Exit 1 on a failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final

from aip.approver.ctl import (
    doctor_checks,
    doctor_dialog,
    doctor_files,
    doctor_sandbox,
    startup_files,
)
from aip.approver.ctl.console import out, out_json, paint
from aip.approver.ctl.doctor_checks import Check, Status
from aip.shared import paths

HELLO_TIMEOUT_S: Final = 1.0  # the status round trip
_TAGS: Final = {
    Status.OK: ("[ ok ]", "green"),
    Status.INFO: ("[info]", "dim"),
    Status.WARN: ("[warn]", "yellow"),
    Status.FAIL: ("[FAIL]", "red"),
}


def register(groups: Any, help_line: str) -> None:
    parser = groups.add_parser(
        "doctor",
        usage="aipctl doctor [--endpoint ENDPOINT] [--timeout SECONDS] [--json] "
        "[-- AIP_PROXY_COMMAND_LINE...]",
        help=help_line,
        description="Check the approver, dialogs, permissions, audit log and policy. After --, "
        "give an aip-proxy command line to check the policy and approver it would use: "
        "aipctl doctor -- aip-proxy --policy p.yaml -- npx server",
    )
    parser.add_argument("--endpoint", help="approver endpoint (default: as aip-proxy finds it)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=HELLO_TIMEOUT_S,
        metavar="SECONDS",
        help=f"how long to wait for the approver's answer (default {HELLO_TIMEOUT_S:g})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run, takes_command=True)


def diagnose(args: argparse.Namespace) -> list[Check]:
    checks: list[Check] = []
    line = doctor_files.ProxyLine(None, None)
    if args.command:
        line = doctor_files.parse_proxy_line(list(args.command))
        if line.error is not None:
            checks.append(
                Check(
                    "proxy",
                    Status.FAIL,
                    f"command line refused: {line.error}",
                    fix="aip-proxy [--policy FILE] [--approver ENDPOINT] -- COMMAND [ARG...]",
                )
            )
    endpoint = args.endpoint or line.endpoint or paths.default_endpoint()

    socket = doctor_checks.check_runtime_dir(endpoint)
    checks.append(socket)
    reply = running = None
    if socket.status is Status.FAIL:
        # The proxy refuses this socket; talking to whoever is behind it proves nothing.
        checks.append(
            Check(
                "approver",
                Status.FAIL,
                "not contacted: the socket is not trusted",
                fix="fix the socket line above first",
            )
        )
    else:
        approver, reply = doctor_checks.check_approver(endpoint, args.timeout)
        running = doctor_dialog.running_approver(endpoint)
        if running is not None and reply is None:
            approver.details.insert(0, f"pid {running.pid}")
        checks.append(approver)
    # Judge the display and dialog program by the environment the approver has (or will
    # have): a systemd unit sees the user manager's environment, not this shell's.
    systemd = any(m == "systemd" for m, _ in startup_files.installed_files())
    manager_env = doctor_checks.systemd_manager_env() if systemd else None
    checks.extend(doctor_checks.check_startup(manager_env))
    checks.append(doctor_dialog.dialog_check(reply, running, manager_env))
    audit_path = Path(reply.audit_path) if reply else paths.default_audit_log()
    checks.append(doctor_files.check_audit_log(audit_path, doctor_files.audit_progress()))
    checks.append(doctor_files.check_audit_key(audit_path.parent / paths.HMAC_KEY_NAME))
    checks.append(doctor_files.check_policy(line.policy, for_line=bool(args.command)))
    checks.append(doctor_sandbox.check_sandbox(line.sandbox))
    return checks


def run(args: argparse.Namespace) -> int:
    checks = diagnose(args)
    failed = any(c.status is Status.FAIL for c in checks)
    if args.json:
        out_json(
            {
                "ok": not failed,
                "checks": [
                    {
                        "name": c.name,
                        "status": c.status.value,
                        "summary": c.summary,
                        "details": c.details,
                        "fix": c.fix,
                    }
                    for c in checks
                ],
            }
        )
        return 1 if failed else 0
    width = max(len(c.name) for c in checks)
    for c in checks:
        tag, colour = _TAGS[c.status]
        out(f"{paint(tag, colour)} {c.name.ljust(width)}  {c.summary}")
        indent = " " * (len(tag) + width + 3)
        for detail in c.details:
            out(f"{indent}{detail}")
        if c.fix:
            out(f"{indent}{paint('fix:', 'bold')} {c.fix}")
    problems = sum(c.status in (Status.FAIL, Status.WARN) for c in checks)
    verdict = "asks can reach you" if not failed else "asks would be denied, see FAIL above"
    out(f"\n{problems} problem(s); {verdict}." if problems else f"\nAll good: {verdict}.")
    sys.stdout.flush()
    return 1 if failed else 0
