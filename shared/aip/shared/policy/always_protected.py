"""aip's own files, protected whatever the policy says (DESIGN §4.5).

The proxy adds them to the policy's ``protected_paths`` (aip.proxy.protection); ``aipctl
policy explain`` shows them. Where they are is aip.shared.paths' business.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from aip.shared import paths
from aip.shared.errors import ConfigError
from aip.shared.policy.protected import family


def always_protected(
    policy_path: str | None, endpoint: str | None = None, audit_logs: Iterable[str] = ()
) -> tuple[str, ...]:
    """What DESIGN §4.5 protects whatever the policy says, as absolute path strings: the
    policy file (and its folder when that is the default ``~/.config/aip``), the runtime dirs
    (the default one and the endpoint's), the state dir, and every audit log we know of
    (``$AIP_AUDIT_LOG`` or the default, and ``audit_logs``: the ones approvers announced in
    ``welcome``) with its HMAC key and spool beside it.

    The endpoint's directory is protected when it is a private dir of ours that is not home
    or above it (``ipc:///tmp/x.sock`` or ``ipc://~/x.sock`` would protect all of /tmp or
    home); otherwise the socket and its lock are. Each log is also given as a family root
    (``<log>.*``, aip.shared.policy.protected): its rotations ``<log>.<seq>`` and torn copies
    ``<log>.torn-*`` are protected wherever the log sits, not only in the state dir."""
    found: list[str] = []

    def add(path: Path | str) -> None:
        text = os.path.abspath(os.path.expanduser(str(path)))
        if text not in found:
            found.append(text)

    if policy_path:
        add(policy_path)
        folder = os.path.dirname(os.path.abspath(policy_path))
        if os.path.realpath(folder) == os.path.realpath(Path.home() / ".config" / "aip"):
            # The default folder holds nothing but the policy: protected whole, so the
            # folder cannot be moved away or another moved into its place by name (a policy
            # elsewhere keeps its folder usable; reload pinning covers it, aip.proxy.reload).
            add(folder)
    add(paths.runtime_dir())
    try:
        sock = paths.socket_path(endpoint or paths.default_endpoint())
    except ConfigError:
        sock = None  # asks are refused anyway; nothing of ours lives there
    if sock is not None:
        if paths.protectable_dir(sock.parent):
            add(sock.parent)
        else:
            add(sock)
            add(paths.lock_path(paths.IPC_PREFIX + str(sock)))
    add(paths.state_dir())
    for log in (str(paths.default_audit_log()), *audit_logs):
        if not log:
            continue
        path = Path(os.path.expanduser(log))
        add(path)
        add(family(str(path)))
        add(path.parent / paths.HMAC_KEY_NAME)
        add(path.parent / paths.SPOOL_DIR_NAME)
    return tuple(found)
