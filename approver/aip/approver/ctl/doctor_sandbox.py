"""``aipctl doctor``: does the kernel sandbox that hides protected paths from MCP servers work
here, and what the proxy does when it does not (``--sandbox``, docs/security.md)."""

from __future__ import annotations

import sys

from aip.approver.ctl.doctor_checks import Check, Status
from aip.proxy.sandbox import bwrap
from aip.proxy.sandbox.launch import ENV, STRING_ONLY, Mode, check, parse_mode
from aip.proxy.sandbox.plan import Plan

_PROGRAM = {"linux": "bubblewrap (own mount and PID namespaces)", "darwin": "sandbox-exec"}


def check_sandbox(flag: str | None, platform: str = sys.platform) -> Check:
    """``flag``: the proxy command line's ``--sandbox`` (None: ``$AIP_SANDBOX`` or default)."""
    try:
        mode = parse_mode(flag)
    except ValueError as exc:
        return Check("sandbox", Status.FAIL, str(exc), fix=f"--sandbox require (or unset ${ENV})")
    if mode is Mode.OFF:
        return Check(
            "sandbox",
            Status.WARN,
            f"off (--sandbox off): {STRING_ONLY}",
            fix=f"drop --sandbox off (and ${ENV}=off) to let the kernel hide them",
        )
    _, problem = check(Plan((), (), (), ()), platform)
    if problem is None:
        kind = _PROGRAM.get("linux" if platform.startswith("linux") else platform, platform)
        return Check("sandbox", Status.OK, f"{kind} works: servers cannot reach protected paths")
    refuses = mode is Mode.REQUIRE
    outcome = (
        "aip-proxy refuses to start (--sandbox require, the default)"
        if refuses
        else f"{STRING_ONLY} (--sandbox auto)"
    )
    return Check(
        "sandbox",
        Status.FAIL if refuses else Status.WARN,
        f"unavailable: {problem}",
        [outcome],
        fix=_fix(problem) + f"; or accept string checks only: --sandbox auto ({ENV}=auto)",
    )


def _fix(problem: str) -> str:
    if "not installed" in problem:
        return "apt install bubblewrap (Fedora: dnf install bubblewrap)"
    return bwrap.userns_fix() or "see docs/security.md (the kernel sandbox)"
