"""``aipctl approver install|uninstall``: start the approver with the desktop login.

Linux with a systemd user manager: a user unit tied to graphical-session.target; other Linux
desktops: an XDG autostart entry; macOS: a launchd LaunchAgent; Windows: printed instructions.
``--dry-run`` prints every file and command instead of writing or running anything.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

from aip.approver.ctl import safe_files, startup_files
from aip.approver.ctl.console import err, out, paint
from aip.approver.ctl.startup_files import StartupFile
from aip.shared import paths
from aip.shared.errors import ConfigError
from aip.shared.startup_paths import LAUNCHD_LABEL, UNIT_NAME

COMMAND_TIMEOUT_S: Final = 30.0
# What the approver needs from the login session to reach the display and the session bus.
SESSION_VARS: Final = ("DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "DBUS_SESSION_BUS_ADDRESS")
METHODS: Final = ("auto", "systemd", "autostart", "launchd", "windows")


def register(actions: Any) -> None:
    """Add ``install`` and ``uninstall`` to the ``aipctl approver`` group (made in ctl.main)."""
    install = actions.add_parser(
        "install",
        usage="aipctl approver install [options] [-- APPROVER_ARG...]",
        help="write and enable the start-up file for this platform",
        description="Write the file that starts aip-approver with your desktop login and enable "
        "it. Arguments after -- are passed to aip-approver: aipctl approver install -- --dialog "
        "zenity",
    )
    install.add_argument("--method", choices=METHODS, default="auto", help="default: detected")
    install.add_argument("--dry-run", action="store_true", help="print, write and run nothing")
    install.add_argument("--no-start", action="store_true", help="enable only; do not start now")
    install.add_argument("--force", action="store_true", help="replace a file aipctl did not write")
    install.set_defaults(func=run_install, takes_command=True)

    uninstall = actions.add_parser("uninstall", help="stop and remove every start-up file")
    uninstall.add_argument("--dry-run", action="store_true", help="print, remove and run nothing")
    uninstall.add_argument(
        "--force", action="store_true", help="also remove files aipctl did not write"
    )
    uninstall.set_defaults(func=run_uninstall)


def detect_method() -> str:
    if sys.platform == "darwin":
        return "launchd"
    if os.name == "nt":
        return "windows"
    return "systemd" if systemd_user_manager() else "autostart"


def systemd_user_manager() -> bool:
    """A running systemd user manager: systemd is PID 1 and this user's manager has its
    runtime directory (sd_booted() and the user-manager half of it)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return (
        shutil.which("systemctl") is not None
        and Path("/run/systemd/system").is_dir()
        and bool(runtime)
        and Path(runtime, "systemd").is_dir()
    )


def _session_vars() -> list[str]:
    return [name for name in SESSION_VARS if os.environ.get(name)]


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _install_commands(method: str, file: StartupFile, start: bool) -> list[list[str]]:
    if method == "systemd":
        cmds = [["systemctl", "--user", "daemon-reload"]]
        if _session_vars():
            cmds.append(["systemctl", "--user", "import-environment", *_session_vars()])
        cmds.append(["systemctl", "--user", "enable", UNIT_NAME])
        if start:  # restart: an updated unit takes effect now; starts it when not running
            cmds.append(["systemctl", "--user", "restart", UNIT_NAME])
        return cmds
    if method == "launchd":
        domain = f"gui/{os.getuid()}"
        # bootout first (may fail: not loaded), so a re-install loads the new file.
        cmds = [["launchctl", "bootout", f"{domain}/{LAUNCHD_LABEL}"]]
        return [*cmds, ["launchctl", "bootstrap", domain, str(file.path)]] if start else cmds
    return []


def run_install(args: argparse.Namespace) -> int:
    method = detect_method() if args.method == "auto" else args.method
    extra = list(args.command)
    if method == "launchd" and not any(a.startswith("--endpoint") for a in extra):
        # Pinned: whether launchd gives an agent this shell's $TMPDIR is not ours to rely on,
        # and `aipctl config` pins the same endpoint into every client entry.
        extra = ["--endpoint", paths.default_endpoint(), *extra]
    argv = startup_files.approver_argv(extra)
    if method == "windows":
        out(startup_files.render_windows(argv))
        return 0
    render = {
        "systemd": startup_files.render_unit,
        "autostart": startup_files.render_desktop,
        "launchd": startup_files.render_plist,
    }[method]
    try:
        file = render(argv)
    except ValueError as exc:
        err(f"aipctl approver install: {exc}")
        return 2
    if file.path.exists() and not startup_files.written_by_us(method, file.path) and not args.force:
        err(f"{file.path} exists and was not written by aipctl; not replacing it.")
        err("Move it away, or run again with --force to replace it.")
        return 1
    start = not args.no_start and (method == "launchd" or _has_display())
    commands = _install_commands(method, file, start)
    # Switching methods (e.g. to autostart when graphical-session.target never starts): two
    # start-up files would start two approvers, and the second would fail on the lock.
    for other, path in startup_files.installed_files():
        if other != method and startup_files.written_by_us(other, path):
            out(f"# replacing the {other} start-up file" if args.dry_run else f"replacing {path}")
            if _remove(other, path, args.dry_run) != 0:
                return 1
    if args.dry_run:
        out(f"# {method}: would write {file.path}")
        out(file.text.rstrip("\n"))
        for cmd in commands:
            out(f"# would run: {shlex.join(cmd)}")
        return 0
    try:
        _write(file)
        if method == "launchd":  # launchd does not create the log's directory
            startup_files.launchd_log_path().parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        err(f"cannot write {file.path}: {exc}")
        return 1
    out(f"wrote {file.path}")
    status = _run_all(commands, tolerate={("launchctl", "bootout")})
    if method == "autostart" and start and status == 0:
        status = _start_detached(argv)
    _explain_after_install(method, start)
    return status


def _write(file: StartupFile) -> None:
    # Start-up files hold no secret; launchd refuses group-writable ones.
    safe_files.atomic_replace(file.path, file.text.encode("utf-8"), 0o644)


def _run_all(commands: list[list[str]], tolerate: set[tuple[str, str]] | None = None) -> int:
    """Run each command; on the first failure say what failed and what is left to run."""
    for i, cmd in enumerate(commands):
        ok, detail = _run(cmd)
        if ok or (cmd[0], cmd[1]) in (tolerate or set()):
            continue
        err(paint(f"failed: {shlex.join(cmd)}", "red", sys.stderr))
        if detail:
            err(detail)
        err("Fix the cause, then run:")
        for rest in commands[i:]:
            err(f"  {shlex.join(rest)}")
        return 1
    return 0


def _run(cmd: list[str], *, quiet: bool = False) -> tuple[bool, str]:
    """(succeeded, what it said). Not quiet: the user sees each command that changed things."""
    if shutil.which(cmd[0]) is None:
        return False, f"{cmd[0]} not found on PATH"
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if not quiet:
        out(f"ran {shlex.join(cmd)}")
    return done.returncode == 0, (done.stderr or done.stdout).strip()


def _start_detached(argv: list[str]) -> int:
    """Start the approver now for an autostart install (the entry itself acts at next login),
    in its own session so it outlives this shell; its stderr goes to a 0600 log file."""
    log_path = paths.state_dir() / "approver.log"
    try:
        paths.ensure_private_dir(paths.state_dir())
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    except (OSError, ConfigError) as exc:
        err(f"cannot open {log_path}: {exc}")
        return 1
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_fd,
            start_new_session=True,
        )
    except OSError as exc:
        err(f"could not start {argv[0]}: {exc}")
        return 1
    finally:
        os.close(log_fd)
    out(f"started aip-approver (pid {proc.pid}); its log: {log_path}")
    return 0


def _explain_after_install(method: str, started: bool) -> None:
    if method == "systemd":
        if not _session_vars():
            err(
                "No DISPLAY or WAYLAND_DISPLAY in this shell: the approver starts with your next "
                "graphical login. If your session does not export its display to systemd, add "
                "`dbus-update-activation-environment --systemd DISPLAY WAYLAND_DISPLAY XAUTHORITY` "
                "to your session start-up."
            )
        if started and not _graphical_target_active():
            err(
                "graphical-session.target is not active in this session (common with a window "
                "manager started by startx): the unit will not start at login. Use "
                "`aipctl approver install --method autostart` instead."
            )
    elif not started and method != "launchd":
        err("The approver starts with your next desktop login.")
    out("Check it with: aipctl doctor")


def _graphical_target_active() -> bool:
    ok, _ = _run(["systemctl", "--user", "is-active", "graphical-session.target"], quiet=True)
    return ok


def run_uninstall(args: argparse.Namespace) -> int:
    found = startup_files.installed_files()
    if not found:
        out("No aip-approver start-up file is installed.")
        return 0
    status = 0
    for method, path in found:
        if not startup_files.written_by_us(method, path) and not args.force:
            err(f"{path} was not written by aipctl; left in place (use --force to remove it).")
            status = 1
            continue
        status = max(status, _remove(method, path, args.dry_run))
    return status


def _remove(method: str, path: Path, dry_run: bool) -> int:
    """Stop what the file started (best effort), then remove the file."""
    before, after = _uninstall_commands(method)
    if dry_run:
        for cmd in before:
            out(f"# would run: {shlex.join(cmd)}")
        out(f"# would remove {path}")
        for cmd in after:
            out(f"# would run: {shlex.join(cmd)}")
        return 0
    for cmd in before:  # the manager may not be running (e.g. over SSH): say so, go on
        ok, detail = _run(cmd)
        if not ok:
            err(f"note: {shlex.join(cmd)}: {detail or 'failed'}")
    try:
        path.unlink()
    except OSError as exc:
        err(f"cannot remove {path}: {exc}")
        return 1
    out(f"removed {path}")
    for cmd in after:
        _run(cmd)
    if method == "autostart":
        err("An approver started from the autostart entry keeps running until you log out.")
    return 0


def _uninstall_commands(method: str) -> tuple[list[list[str]], list[list[str]]]:
    if method == "systemd" and shutil.which("systemctl"):
        return (
            [["systemctl", "--user", "disable", "--now", UNIT_NAME]],
            [["systemctl", "--user", "daemon-reload"]],
        )
    if method == "launchd" and shutil.which("launchctl"):
        return [["launchctl", "bootout", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"]], []
    return [], []
