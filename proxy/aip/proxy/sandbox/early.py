"""What the proxy does before it imports its relay (issue 16: start-up): start the sandbox probe.

bwrap's probe (``launch.Probe``) takes ~7-15 ms of wall time but ~2 ms of CPU: it mostly waits
in the kernel while namespaces and mounts are made. ``aip-proxy`` starts it right after the
policy is loaded and only then imports the relay (~60 ms of CPU), so the wait passes while the
proxy works. ``runner.run`` builds the prefix exactly as before and uses this probe only if it
ran that very prefix; the server is started only once the probe answered, so a required
sandbox that cannot start still refuses before the server exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from aip.proxy.sandbox.host import which
from aip.proxy.sandbox.launch import Mode, Probe, start_probe
from aip.shared import paths
from aip.shared.errors import ConfigError
from aip.shared.policy.always_protected import always_protected


def start(
    mode: Mode,
    *,
    policy_protected: Sequence[str],
    policy_path: str | None,
    approver: str | None,
    command: Sequence[str],
) -> Probe | None:
    """The probe ``runner.run`` will need, already running; None where it will need none or
    cannot tell yet (it then probes at its own time, as without this)."""
    if mode is Mode.OFF or missing_program(command[0]):
        return None
    ensure_state_dirs()  # as run() does first: their mounts need them (run() says any error)
    try:  # the session's first Context (protection.Protection.context), no audit log yet
        protected = [*policy_protected, *always_protected(policy_path, approver, [])]
    except (OSError, ConfigError):
        return None
    return start_probe(mode, protected, cwd=os.getcwd(), policy_path=policy_path, command=command)


def ensure_state_dirs(
    on_error: Callable[[Path, Exception], None] = lambda path, exc: None,
) -> None:
    """Create the aip state and runtime folders (0700) if they are missing, so the sandbox
    hides them from the start; a folder we cannot make is left to the string check."""
    for make in (paths.state_dir, paths.runtime_dir):
        try:
            paths.ensure_private_dir(make())
        except (OSError, ConfigError) as exc:  # an unsafe dir stays as it is
            on_error(make(), exc)


def missing_program(program: str) -> bool:
    """Certainly not there: a path that does not exist, or a name not on PATH (any other
    doubt is left to exec, which may know better than access())."""
    if "/" not in program:
        return which(program) is None
    try:
        os.stat(program)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False
