"""The sandbox mode (``--sandbox`` / ``$AIP_SANDBOX``) and the command prefix it leads to.

``require`` (the default): the server runs in the kernel sandbox or the proxy does not start,
saying why and how to fix it. ``auto``: the sandbox when it works here, else string checks
only, said on stderr at every start. ``off``: string checks only, said on stderr. A careful
user expects the protection the documentation promises, so losing it is never silent and,
unless chosen, never happens.
"""

from __future__ import annotations

import enum
import os
import subprocess
import sys
import time
from collections.abc import Sequence

from aip.proxy.sandbox import bwrap, seatbelt
from aip.proxy.sandbox.host import which
from aip.proxy.sandbox.plan import Plan, build, launch_files
from aip.shared import logs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

log = logs.get(__name__)

ENV: Final = "AIP_SANDBOX"
PROBE_TIMEOUT_S: Final = 5.0


class Mode(enum.Enum):
    REQUIRE = "require"
    AUTO = "auto"
    OFF = "off"


DEFAULT: Final = Mode.REQUIRE
STRING_ONLY: Final = "protected paths are checked in tool-call strings only"


class SandboxUnavailable(Exception):
    """``--sandbox require`` and no working sandbox: the proxy must not start."""


def parse_mode(flag: str | None) -> Mode:
    """The flag, else ``$AIP_SANDBOX``, else the default; ValueError names the choices."""
    raw = flag if flag is not None else (os.environ.get(ENV) or DEFAULT.value)
    try:
        return Mode(raw.strip().lower())
    except ValueError:
        choices = "|".join(m.value for m in Mode)
        source = "--sandbox" if flag is not None else f"${ENV}"
        raise ValueError(f"{source} must be {choices}, not {raw!r}") from None


def prefix_for(plan: Plan, platform: str = sys.platform) -> tuple[list[str], str | None]:
    """(command prefix, None) on a platform with a sandbox program, else ([], why not)."""
    if platform.startswith("linux"):
        program = bwrap.find()
        if program is None:
            return [], f"bwrap is not installed ({bwrap.INSTALL_HINT})"
        return [*bwrap.argv(program, plan), "--"], None
    if platform == "darwin":
        if not os.access(seatbelt.SANDBOX_EXEC, os.X_OK):
            return [], f"{seatbelt.SANDBOX_EXEC} is missing"
        return [*seatbelt.argv(plan), "--"], None
    return [], f"no sandbox is implemented for {platform}"


class Probe:
    """``probe``, started now and read later: the proxy starts it before it imports its relay
    (sandbox.early), so the ~7-15 ms bwrap spends mostly waiting in the kernel (namespaces,
    mounts) pass while the proxy works. ``problem`` waits for it; the server is never started
    before that answer."""

    def __init__(self, prefix: Sequence[str], timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.prefix = list(prefix)
        # The plan it was made from and that plan's inputs (``start_probe``): a caller with
        # the same inputs takes the plan instead of building it again (~1.3 ms).
        self.plan: Plan | None = None
        self.made_for: tuple[object, ...] | None = None
        self._timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._problem: str | None = None
        true = which("true") or "/bin/true"
        try:
            self._proc = subprocess.Popen(
                [*prefix, true],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            self._problem = f"{prefix[0]}: {exc}"

    def problem(self) -> str | None:
        """Why this exact sandbox cannot start here (the program's own last line), or None."""
        proc, self._proc = self._proc, None
        if proc is None:
            return self._problem
        try:
            _, err = proc.communicate(timeout=max(self._deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            exc = subprocess.TimeoutExpired(proc.args, self._timeout_s)  # subprocess.run's words
            self._problem = f"{self.prefix[0]}: {exc}"
            return self._problem
        if proc.returncode != 0:
            lines = err.decode("utf-8", "replace").strip().splitlines()
            last = lines[-1] if lines else f"exit status {proc.returncode}"
            self._problem = last + bwrap.userns_hint()
        return self._problem

    def close(self) -> None:
        """Not needed after all: end it (a no-op once ``problem`` answered)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.communicate()


def probe(prefix: Sequence[str], timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why this exact sandbox cannot start here (the program's own last line), or None: it
    runs ``true`` first, so a refusal is said before the server starts."""
    return Probe(prefix, timeout_s).problem()


def check(
    plan: Plan, platform: str = sys.platform, early: Probe | None = None
) -> tuple[list[str], str | None]:
    """(prefix, None) when the sandbox for ``plan`` works here, else ([], why not).
    ``early``: a probe started before, used only if it ran this very prefix."""
    prefix, problem = prefix_for(plan, platform)
    if early is not None and (problem is not None or early.prefix != prefix):
        early.close()  # something changed since it started (e.g. a folder now exists)
        early = None
    if problem is None:
        problem = early.problem() if early is not None else probe(prefix)
    return (prefix, None) if problem is None else ([], problem)


def _plan_inputs(
    protected: Sequence[str], cwd: str, policy_path: str | None, command: Sequence[str]
) -> tuple[object, ...]:
    home = os.environ.get("HOME") or os.path.expanduser("~")
    return (tuple(protected), cwd, policy_path, tuple(command), home)


def plan_for(
    protected: Sequence[str], *, cwd: str, policy_path: str | None, command: Sequence[str]
) -> Plan:
    home = os.environ.get("HOME") or os.path.expanduser("~")
    return build(
        protected,
        cwd=cwd,
        home=home,
        policy_path=policy_path,
        command=command,
        read_only=launch_files(),
    )


def start_probe(
    mode: Mode,
    protected: Sequence[str],
    *,
    cwd: str,
    policy_path: str | None,
    command: Sequence[str],
) -> Probe | None:
    """The probe ``server_prefix`` will need, started now (None: it needs none, or the
    prefix cannot be made yet: ``server_prefix`` then says why, as without this)."""
    if mode is Mode.OFF:
        return None
    try:
        plan = plan_for(protected, cwd=cwd, policy_path=policy_path, command=command)
        prefix, problem = prefix_for(plan)
    except Exception:  # noqa: BLE001  (server_prefix meets it again and handles it there)
        return None
    if problem is not None:
        return None
    probe = Probe(prefix)
    probe.plan, probe.made_for = plan, _plan_inputs(protected, cwd, policy_path, command)
    return probe


def wrapper_levels(prefix: Sequence[str]) -> int:
    """How many of the sandbox's own processes sit above the server: bwrap and, in the new
    PID namespace, its init; sandbox-exec replaces itself with the server."""
    return 2 if prefix and os.path.basename(prefix[0]) == "bwrap" else 0


def server_prefix(
    mode: Mode,
    protected: Sequence[str],
    *,
    cwd: str,
    policy_path: str | None,
    command: Sequence[str],
    early: Probe | None = None,
) -> list[str]:
    """The prefix to start the server with ([] for none); SandboxUnavailable under
    ``require`` when there is no working sandbox. Says on stderr what protects the paths.
    ``early``: ``start_probe``'s probe (used if it ran the same prefix, else ended)."""
    if mode is Mode.OFF:
        if early is not None:
            early.close()
        log.warning("kernel sandbox off (--sandbox off): %s", STRING_ONLY)
        return []
    plan = early.plan if early is not None else None  # made a moment ago, for the probe
    if (
        plan is None
        or early is None
        or early.made_for != _plan_inputs(protected, cwd, policy_path, command)
    ):
        plan = plan_for(protected, cwd=cwd, policy_path=policy_path, command=command)
    prefix, problem = check(plan, early=early)
    if problem is None:
        log.info(
            "kernel sandbox %s: %d folders and %d files hidden, %d read-only",
            os.path.basename(prefix[0]),
            len(plan.hide_dirs),
            len(plan.hide_files),
            len(plan.read_only),
        )
        log.debug(
            "hidden: %s; read-only: %s; pinned: %s",
            ", ".join([*plan.hide_dirs, *plan.hide_files]) or "-",
            ", ".join(plan.read_only) or "-",
            ", ".join(plan.pin) or "-",
        )
        if plan.missing:
            log.info("not there at start, so left to the string check: %s", ", ".join(plan.missing))
        return prefix
    if mode is Mode.REQUIRE:
        raise SandboxUnavailable(
            f"the kernel sandbox is unavailable: {problem}. Not starting the server "
            f"(--sandbox require, the default). To run with {STRING_ONLY} instead: "
            f"--sandbox auto (or {ENV}=auto)"
        )
    log.warning("the kernel sandbox is unavailable: %s; %s (--sandbox auto)", problem, STRING_ONLY)
    return []
