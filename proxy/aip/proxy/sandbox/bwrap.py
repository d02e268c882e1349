"""Linux: the bubblewrap command line that starts the server in its own namespaces.

Own mount namespace: the host's root bound as it is (``/dev`` too), a fresh ``/proc``, then
the plan's pins, read-only binds and hides. Own PID namespace: the server cannot see or
signal anything outside, and when its first process (bwrap's init) ends the kernel kills
the rest, daemons included. ``--die-with-parent`` ends it when the proxy dies, SIGKILL
included. A normal user gets a user namespace from bwrap (no capabilities inside; the
mounts are locked, so a nested ``unshare -Urm`` cannot lift them); root keeps its uid but
loses the capabilities that would undo a mount or read around it.
"""

from __future__ import annotations

import os

from aip.proxy.sandbox.host import which
from aip.proxy.sandbox.plan import Plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# Root's capabilities that reach past a mount: unmount or remount it (SYS_ADMIN), open a file
# by handle below it (DAC_READ_SEARCH), read another process's view (SYS_PTRACE), or reach
# the disk or kernel directly. DAC_OVERRIDE, CHOWN, NET_* and the like stay: a root server
# keeps working as before, and none of them writes through a read-only mount.
ROOT_CAPS_DROPPED: Final = (
    "CAP_SYS_ADMIN",
    "CAP_DAC_READ_SEARCH",
    "CAP_SYS_PTRACE",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_MKNOD",
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_SYS_BOOT",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_AUDIT_CONTROL",
    "CAP_CHECKPOINT_RESTORE",
)
_USERNS_SYSCTLS: Final = (
    ("/proc/sys/kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone=1"),
    ("/proc/sys/user/max_user_namespaces", "0", "user.max_user_namespaces=15000"),
    (
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
        "kernel.apparmor_restrict_unprivileged_userns=0 (or install bubblewrap's AppArmor "
        "profile, /etc/apparmor.d/bwrap-userns-restrict)",
    ),
)
ENV_PROGRAM: Final = "AIP_BWRAP"
INSTALL_HINT: Final = "Debian/Ubuntu: apt install bubblewrap"


def find() -> str | None:
    """The bwrap program: ``$AIP_BWRAP`` (one elsewhere, or none: the tests' seam), on PATH,
    else where distributions put it (MCP hosts often start us with a short PATH)."""
    chosen = os.environ.get(ENV_PROGRAM)
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    found = which("bwrap")
    if found:
        return found
    return next((p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.access(p, os.X_OK)), None)


def argv(bwrap: str, plan: Plan, *, euid: int | None = None) -> list[str]:
    """The prefix that runs a command in the sandbox (append ``--`` and the command)."""
    out = [bwrap, "--bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc"]
    out += ["--unshare-pid", "--die-with-parent"]
    if (os.geteuid() if euid is None else euid) == 0:
        for cap in ROOT_CAPS_DROPPED:
            out += ["--cap-drop", cap]
    for path in plan.pin:
        out += ["--bind", path, path]
    for path in plan.read_only:
        out += ["--ro-bind", path, path]
    for path in plan.hide_dirs:
        out += ["--tmpfs", path, "--remount-ro", path]
    for path in plan.hide_files:
        out += ["--ro-bind", "/dev/null", path]
    return out


def userns_fix() -> str | None:
    """For a normal user: the sysctl setting that allows the user namespaces some sysctl
    keeps off (None when none does, or when we are root and need none)."""
    if os.geteuid() == 0:
        return None
    for path, off, fix in _USERNS_SYSCTLS:
        try:
            with open(path, encoding="ascii") as f:
                if f.read().strip() == off:
                    return f"sysctl -w {fix}"
        except OSError:
            continue
    return None


def userns_hint() -> str:
    fix = userns_fix()
    return f" (user namespaces are disabled: {fix})" if fix else ""
