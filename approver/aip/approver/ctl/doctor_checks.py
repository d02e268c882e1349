"""The checks behind ``aipctl doctor``: each looks at one thing and says how to fix it.

A check never changes anything. Reachability is a real ``status`` round trip with the approver,
so "reachable" means it answers the protocol, not only that a socket file exists.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import shlex
import shutil
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aip.approver.ctl import startup_files
from aip.approver.ctl.approver_status import query_status
from aip.shared import paths, startup_paths
from aip.shared.errors import ConfigError
from aip.shared.protocol.status import StatusReply

SYSTEMCTL_TIMEOUT_S: Final = 5.0
DISPLAY_VARS: Final = ("DISPLAY", "WAYLAND_DISPLAY")


class Status(enum.StrEnum):
    OK = "ok"
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"


@dataclass(slots=True)
class Check:
    name: str
    status: Status
    summary: str
    details: list[str] = field(default_factory=list)
    fix: str | None = None  # the command (or step) that fixes it


def lock_holder(lock: Path) -> int | None:
    """The pid holding the approver's single-instance flock, or None when nobody holds it.

    Linux: read from /proc/locks, which never touches the lock. Elsewhere: try a shared lock
    for an instant (an approver starting in that instant would fail and be restarted) and
    take the pid the approver wrote into the file."""
    try:
        st = os.stat(lock, follow_symlinks=False)
    except OSError:
        return None
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return _probe_flock(lock)
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:16039977 0 EOF" (waiters have "->" first)
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        device = fields[5].split(":")
        with contextlib.suppress(ValueError):
            if (
                len(device) == 3
                and (
                    int(device[0], 16),
                    int(device[1], 16),
                    int(device[2]),
                )
                == want
            ):
                return int(fields[4])
    return None


def _probe_flock(lock: Path) -> int | None:
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        with contextlib.suppress(OSError, ValueError):
            return int(os.pread(fd, 32, 0).decode(errors="replace").strip())
        return 0  # held, pid unknown
    except OSError:
        return None
    finally:
        os.close(fd)  # closing releases a lock we may have taken
    return None


def check_runtime_dir(endpoint: str) -> Check:
    try:
        sock = paths.socket_path(endpoint)
    except ConfigError as exc:
        return Check("socket", Status.FAIL, str(exc), fix=f"unset {paths.ENDPOINT_ENV}")
    directory = sock.parent
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and directory.parent == Path(xdg):
        parent_problem = paths.dir_problem(Path(xdg))
        if parent_problem is not None:
            return Check(
                "socket",
                Status.FAIL,
                f"XDG_RUNTIME_DIR is not private: {parent_problem}",
                fix="log out and in again (the login manager creates it), or unset XDG_RUNTIME_DIR",
            )
    state, problem = paths.check_private_dir(directory)
    if state is paths.DirState.MISSING:
        return Check("socket", Status.INFO, f"{directory} does not exist yet (no approver ran)")
    if state is paths.DirState.UNTRUSTED:
        st = directory.lstat()
        ours = st.st_uid == os.getuid() and not stat.S_ISLNK(st.st_mode)
        if not paths.is_aip_own(directory):
            fix = (
                f"unset {paths.ENDPOINT_ENV}, or point it into a folder of its own (0700, yours); "
                f"{directory} is not aip's, so nothing there is changed"
            )
        elif ours and stat.S_ISDIR(st.st_mode):
            fix = f"chmod 700 {shlex.quote(str(directory))}"
        else:
            fix = (
                f"sudo rm -rf {shlex.quote(str(directory))}   # not yours: remove, then restart "
                "the approver"
            )
        return Check(
            "socket",
            Status.FAIL,
            f"socket directory refused: {problem}",
            ["the proxy will not connect through it; every ask is denied (approver_untrusted)"],
            fix,
        )
    sock_problem = paths.socket_problem(sock)
    if sock_problem is None:
        mode = stat.S_IMODE(directory.lstat().st_mode)
        return Check("socket", Status.OK, f"{sock} (directory {mode:04o}, yours)")
    if not os.path.lexists(sock):
        return Check("socket", Status.INFO, f"no socket at {sock} (approver not running)")
    fix = (
        f"rm {shlex.quote(str(sock))}"
        if paths.is_aip_own(sock.parent)
        else f"unset {paths.ENDPOINT_ENV}, or point it into a folder of its own (0700, yours)"
    )
    return Check("socket", Status.FAIL, sock_problem, fix=fix)


def check_approver(endpoint: str, timeout_s: float) -> tuple[Check, StatusReply | None]:
    try:
        listening = os.path.lexists(paths.socket_path(endpoint))
    except ConfigError:
        listening = False
    # No socket file: nobody can answer, so do not wait for the timeout.
    reply = None
    if listening:
        try:
            reply = query_status(endpoint, timeout_s)
        except ConfigError as exc:  # it answered, but not the status request
            return Check(
                "approver", Status.WARN, f"running at {endpoint}; {exc}", fix=_restart_command()
            ), None
    if reply is not None:
        details = [
            f"pid {reply.pid}, ask deadline {reply.timeout_s:g} s",
            f"{len(reply.proxies)} proxy session(s) connected, {reply.pending} ask(s) pending",
            f"audit log {reply.audit_path}",
        ]
        if not reply.audit_available:
            return Check(
                "approver",
                Status.FAIL,
                f"running at {endpoint}, but it cannot write its audit log: every ask is "
                "denied (audit_unavailable)",
                details,
                fix="free disk space or fix the log's permissions (see the audit log line)",
            ), reply
        return Check("approver", Status.OK, f"running and answering at {endpoint}", details), reply
    running = False
    with contextlib.suppress(ConfigError):
        running = lock_holder(paths.lock_path(endpoint)) is not None
    if running:
        return Check(
            "approver",
            Status.FAIL,
            f"an approver holds the lock but did not answer within {timeout_s:g} s",
            fix=_restart_command(),
        ), None
    elsewhere = _session_socket(endpoint)
    if elsewhere is not None:  # e.g. doctor run over SSH, without the desktop's runtime dir
        return Check(
            "approver",
            Status.FAIL,
            f"no approver answers at {endpoint}, but a socket exists at {elsewhere}",
            ["this shell's XDG_RUNTIME_DIR differs from your desktop session's"],
            fix=f"aipctl doctor --endpoint ipc://{elsewhere}",
        ), None
    return Check(
        "approver",
        Status.FAIL,
        f"no approver answers at {endpoint}: every ask is denied (approver_unavailable)",
        fix=_start_command(),
    ), None


def _session_socket(endpoint: str) -> Path | None:
    """The approver socket of this user's login session (/run/user/UID), if it exists and is
    not the endpoint already tried."""
    candidate = Path(f"/run/user/{os.getuid()}/aip/{paths.SOCKET_NAME}")
    if endpoint == paths.IPC_PREFIX + str(candidate) or paths.socket_problem(candidate):
        return None
    return candidate


def _start_command() -> str:
    installed = {method for method, _ in startup_files.installed_files()}
    if "systemd" in installed:
        return (
            f"systemctl --user start {startup_paths.UNIT_NAME}   "
            f"(why it stopped: journalctl --user -u {startup_paths.UNIT_NAME})"
        )
    if "launchd" in installed:
        return f"launchctl kickstart gui/{os.getuid()}/{startup_paths.LAUNCHD_LABEL}"
    if installed:
        return "aip-approver &   (the autostart entry starts it at your next login)"
    return "aipctl approver install   (starts it now and with every desktop login)"


def _restart_command() -> str:
    installed = {method for method, _ in startup_files.installed_files()}
    if "systemd" in installed:
        return f"systemctl --user restart {startup_paths.UNIT_NAME}"
    return "pkill -u $USER -x aip-approver; aip-approver &"


def check_startup(manager_env: Mapping[str, str] | None) -> list[Check]:
    found = startup_files.installed_files()
    if not found:
        return [
            Check(
                "start-up",
                Status.WARN,
                "the approver does not start with your desktop login",
                fix="aipctl approver install",
            )
        ]
    checks = [Check("start-up", Status.OK, f"{method}: {path}") for method, path in found]
    if any(m == "systemd" for m, _ in found):
        checks.append(_unit_env(manager_env))
    return checks


def systemd_manager_env() -> dict[str, str] | None:
    """The environment the systemd user manager gives its services (None: not reachable)."""
    if shutil.which("systemctl") is None:
        return None
    try:
        done = subprocess.run(
            ["systemctl", "--user", "show-environment"],
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def _unit_env(manager_env: Mapping[str, str] | None) -> Check:
    if manager_env is None:
        return Check(
            "unit env",
            Status.WARN,
            "no systemd user manager reachable from this shell (SSH, sudo or a container?)",
            fix="run aipctl doctor again from a terminal in your desktop session",
        )
    if any(manager_env.get(v) for v in DISPLAY_VARS):
        return Check("unit env", Status.OK, "the user manager has the session's display")
    return Check(
        "unit env",
        Status.FAIL,
        "the systemd user manager has no DISPLAY/WAYLAND_DISPLAY: the unit's dialogs cannot show",
        fix="systemctl --user import-environment DISPLAY WAYLAND_DISPLAY XAUTHORITY "
        f"DBUS_SESSION_BUS_ADDRESS && systemctl --user restart {startup_paths.UNIT_NAME}",
    )
