"""``aipctl doctor`` checks of files: the audit log (place, permissions, hash chain) and the
policy a given ``aip-proxy`` command line would load."""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aip.approver.audit.chain import verify_files
from aip.approver.audit.files import chain_files
from aip.approver.ctl.console import progress
from aip.approver.ctl.doctor_checks import Check, Status
from aip.approver.ctl.policy_lint import lint
from aip.proxy.cli import UsageError, parse_args
from aip.shared import paths
from aip.shared.audit.install_key import HMAC_KEY_BYTES
from aip.shared.errors import PolicyError
from aip.shared.policy.file import find_policy_path
from aip.shared.policy.load import load_policy


@dataclass(frozen=True, slots=True)
class ProxyLine:
    """What doctor needs from an ``aip-proxy`` command line."""

    policy: str | None
    endpoint: str | None
    error: str | None = None
    sandbox: str | None = None  # --sandbox as given (None: $AIP_SANDBOX or the default)


def parse_proxy_line(words: list[str]) -> ProxyLine:
    """Read ``aip-proxy [options] -- COMMAND`` with the proxy's own parser, so doctor sees the
    same policy and endpoint the proxy would."""
    if words and Path(words[0]).name in ("aip-proxy", "aip-proxy.exe"):
        words = words[1:]
    elif words[1:3] == ["-m", "aip.proxy"]:  # python -m aip.proxy
        words = words[3:]
    try:
        ns, _command = parse_args(words)
    except UsageError as exc:
        return ProxyLine(None, None, str(exc))
    except SystemExit:  # argparse has printed why
        return ProxyLine(None, None, "aip-proxy would refuse this command line (see above)")
    return ProxyLine(ns.policy, ns.approver, sandbox=ns.sandbox)


def check_policy(cli_value: str | None, for_line: bool) -> Check:
    where = "for this proxy command line" if for_line else "for a proxy without --policy"
    try:
        path = find_policy_path(cli_value)
    except PolicyError as exc:
        return Check(
            "policy",
            Status.WARN if not for_line else Status.FAIL,
            f"{exc.problems[0].message} ({where})",
            fix=f"write {exc.source} (see docs/install.md), then: aipctl policy check {exc.source}",
        )
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        shown = [p.render(exc.source) for p in exc.problems[:5]]
        if len(exc.problems) > 5:
            shown.append(f"... {len(exc.problems) - 5} more")
        return Check(
            "policy",
            Status.FAIL,
            f"{path} cannot be used {where}: the proxy would refuse to start",
            shown,
            fix=f"aipctl policy check {shlex.quote(str(path))}",
        )
    details = [
        f"mode {policy.mode.value}, {len(policy.tool_rules)} rule(s), "
        f"{len(policy.allowed_tools)} allowed tool(s), {len(policy.denied_tools)} denied",
        f"sha256 {policy.sha256[:16]}...",
    ]
    warnings = [f for f in lint(policy) if f.severity == "warning"]
    if warnings:  # valid, so not a failure; but worth a look
        details.append(
            f"{len(warnings)} warning(s), e.g. line {warnings[0].line}: {warnings[0].message}"
        )
        return Check(
            "policy",
            Status.WARN,
            f"{path}: {policy.name!r} {where}",
            details,
            fix=f"aipctl policy check {shlex.quote(str(path))}",
        )
    return Check("policy", Status.OK, f"{path}: {policy.name!r} {where}", details)


def check_audit_log(path: Path, progress: Callable[[int, int], None] | None) -> Check:
    own = paths.is_aip_own(path.parent)
    # A fix touches only aip's own folders: a log pointed into /tmp or /usr gets advice to
    # move it, never a chmod or mv of the system's files.
    elsewhere = (
        f"choose an audit log in a folder of its own (0700, yours), e.g. "
        f"{paths.state_dir() / paths.AUDIT_NAME}; {path.parent} is not aip's, so nothing there "
        "is changed"
    )
    problem = paths.dir_problem(path.parent)
    if problem is not None and path.parent.exists():
        fix_dir = f"chmod 700 {shlex.quote(str(path.parent))}" if own else elsewhere
        return Check("audit log", Status.FAIL, f"audit directory refused: {problem}", fix=fix_dir)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return Check("audit log", Status.INFO, f"{path} does not exist yet (no approver ran)")
    if not stat.S_ISREG(st.st_mode):
        quoted = shlex.quote(str(path))
        return Check(
            "audit log",
            Status.FAIL,
            f"{path} is not a regular file: the approver cannot log, so asks are denied",
            fix=f"mv {quoted} {quoted}.not-a-log   # then restart the approver"
            if own
            else elsewhere,
        )
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        return Check(
            "audit log",
            Status.FAIL,
            f"{path}: owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}; expected "
            f"yours and 0600",
            fix=f"chmod 600 {shlex.quote(str(path))}" if own else elsewhere,
        )
    report = verify_files(chain_files(path), progress=progress)
    files = f"{len(report.files)} file(s)"
    if report.broken is None:
        return Check(
            "audit log",
            Status.OK,
            f"{path}: {report.records} records in {files}, hash chain intact",
            list(report.notes),
        )
    broken = report.broken
    return Check(
        "audit log",
        Status.FAIL,
        f"{path}: hash chain broken at {broken.file}:{broken.line}: {broken.why}",
        ["keep the file as evidence; records after the break cannot be trusted"],
        fix=f"aipctl audit verify {shlex.quote(str(path))}",
    )


def check_audit_key(path: Path) -> Check:
    """The HMAC key beside the log (``audit-hmac.key``). One the approver cannot load stops
    it from opening the log, and every ask is denied ``audit_unavailable``: an older aip
    killed while making it left it empty. A key of the wrong length was never loaded, so
    nothing was capped with it and removing it loses nothing (a new one is made)."""
    own = paths.is_aip_own(path.parent)
    quoted = shlex.quote(str(path))
    try:
        st = path.lstat()
    except FileNotFoundError:
        return Check("audit key", Status.INFO, f"{path} does not exist yet (made on first use)")
    if not paths.private_file(st):
        return Check(
            "audit key",
            Status.FAIL,
            f"{path} is not a 0600 regular file of yours: the approver cannot open the audit "
            "log, so asks are denied (audit_unavailable)",
            fix=f"mv {quoted} {quoted}.refused   # then restart the approver"
            if own
            else f"choose an audit log in a folder of its own; {path.parent} is not aip's",
        )
    if st.st_size != HMAC_KEY_BYTES:
        return Check(
            "audit key",
            Status.FAIL,
            f"{path} holds {st.st_size} bytes, not {HMAC_KEY_BYTES}: the approver cannot open "
            "the audit log, so asks are denied (audit_unavailable)",
            ["left by an older aip killed while making it; never used, so nothing depends on it"],
            fix=f"rm {quoted}   # then restart the approver (it makes a new one)",
        )
    return Check("audit key", Status.OK, f"{path}: 0600, {HMAC_KEY_BYTES} bytes")


def audit_progress() -> Callable[[int, int], None] | None:
    """A percentage on stderr for verifies of 8 MiB and more, only on a terminal."""
    return progress("verifying audit log:", 8 << 20)
