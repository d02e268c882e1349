"""The sandbox mode (``--sandbox`` / ``$AIP_SANDBOX``) and the command prefix it leads to.

``require`` (the default): the server runs in the kernel sandbox or the proxy does not start,
saying why and how to fix it. ``auto``: the sandbox when it works here, else string checks
only, said on stderr at every start. ``off``: string checks only, said on stderr. A careful
user expects the protection the documentation promises, so losing it is never silent and,
unless chosen, never happens.
"""

from __future__ import annotations

import enum
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Final

from aip.proxy.sandbox import bwrap, seatbelt
from aip.proxy.sandbox.plan import Plan, build, launch_files

log = logging.getLogger(__name__)

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


def probe(prefix: Sequence[str], timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why this exact sandbox cannot start here (the program's own last line), or None: it
    runs ``true`` first, so a refusal is said before the server starts."""
    true = shutil.which("true") or "/bin/true"
    try:
        done = subprocess.run(
            [*prefix, true],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{prefix[0]}: {exc}"
    if done.returncode == 0:
        return None
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return (lines[-1] if lines else f"exit status {done.returncode}") + bwrap.userns_hint()


def check(plan: Plan, platform: str = sys.platform) -> tuple[list[str], str | None]:
    """(prefix, None) when the sandbox for ``plan`` works here, else ([], why not)."""
    prefix, problem = prefix_for(plan, platform)
    if problem is None:
        problem = probe(prefix)
    return (prefix, None) if problem is None else ([], problem)


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
) -> list[str]:
    """The prefix to start the server with ([] for none); SandboxUnavailable under
    ``require`` when there is no working sandbox. Says on stderr what protects the paths."""
    if mode is Mode.OFF:
        log.warning("kernel sandbox off (--sandbox off): %s", STRING_ONLY)
        return []
    home = os.environ.get("HOME") or os.path.expanduser("~")
    plan = build(
        protected,
        cwd=cwd,
        home=home,
        policy_path=policy_path,
        command=command,
        read_only=launch_files(),
    )
    prefix, problem = check(plan)
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
