"""``aipctl doctor``: which dialog the approver can show. A running approver says so itself
(status reply); otherwise it is predicted from the environment the approver will have: the
systemd user manager's for an installed unit, else this shell's."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import psutil

from aip.approver.ctl.doctor_checks import DISPLAY_VARS, Check, Status, lock_holder
from aip.approver.dialogs.choose import choose
from aip.shared import paths
from aip.shared.errors import ConfigError
from aip.shared.outcomes import Outcome
from aip.shared.protocol.status import StatusReply

_NO_DISPLAY_FIX: Final = (
    "run the approver in your desktop session (aipctl approver install), or "
    "`aip-approver --dialog terminal` in a terminal you watch"
)
_NO_PROGRAM_FIX: Final = "sudo apt-get install zenity   # Fedora: sudo dnf install zenity"


@dataclass(frozen=True, slots=True)
class RunningApprover:
    pid: int
    dialog: str = "auto"  # its --dialog
    env: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    readable: bool = False  # its environment could be read


def running_approver(endpoint: str) -> RunningApprover | None:
    """The process holding the endpoint's lock, as far as this user may inspect it."""
    try:
        lock = paths.lock_path(endpoint)
    except ConfigError:
        return None
    pid = lock_holder(lock)
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        argv, env, terminal = proc.cmdline(), proc.environ(), proc.terminal()
    except psutil.Error:
        return None
    return RunningApprover(pid, _dialog_flag(argv), env, terminal is not None, readable=True)


def _dialog_flag(argv: list[str]) -> str:
    for i, word in enumerate(argv):
        if word == "--dialog" and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--dialog="):
            return word.split("=", 1)[1]
    return "auto"


def check_dialog(
    env: Mapping[str, str], where: str, spec: str = "auto", tty: bool = False
) -> Check:
    """What ``--dialog spec`` gives an approver with ``env`` (and a terminal or not)."""
    display = any(env.get(v) for v in DISPLAY_VARS)
    try:
        choice = choose(spec, env=env, tty=tty)
    except ConfigError as exc:
        return Check(
            "dialog",
            Status.FAIL,
            f"{where}: {exc}: every ask is denied",
            fix="aipctl approver install -- --dialog auto   # a dialog program that exists here",
        )
    backend = choice.backend
    if backend is not None:
        shown = ", ".join(f"{v}={env[v]}" for v in DISPLAY_VARS if env.get(v))
        details = [f"{where}: {shown}"] if display else [where]
        if sys.platform == "darwin":
            details.append(
                "no dialog? allow your terminal in System Settings > Privacy & Security > "
                'Accessibility; test: osascript -e \'display dialog "Test" buttons '
                '{"Allow", "Deny"}\''
            )
        return Check("dialog", Status.OK, f"--dialog {spec} uses {backend.name}", details)
    why, outcome = choice.why, choice.unavailable
    if not display and sys.platform.startswith("linux"):
        return Check(
            "dialog",
            Status.FAIL,
            f"no display in {where} ({why}): asks are denied ({outcome})",
            ["a desktop login has DISPLAY or WAYLAND_DISPLAY; SSH and cron do not"],
            fix=_NO_DISPLAY_FIX,
        )
    return Check(
        "dialog",
        Status.FAIL,
        f"{where}: {why}: asks are denied ({outcome})",
        fix=_NO_PROGRAM_FIX,
    )


def reported_dialog(reply: StatusReply, running: RunningApprover | None) -> Check:
    """What the running approver itself says about its dialogs (the authority)."""
    env = running.env if running is not None and running.readable else {}
    shown = ", ".join(f"{v}={env[v]}" for v in DISPLAY_VARS if env.get(v))
    details = [f"its display: {shown}"] if shown else []
    if reply.backend:
        return Check(
            "dialog",
            Status.OK,
            f"the running approver (pid {reply.pid}) shows dialogs with {reply.backend}",
            details,
        )
    no_display = reply.unavailable.startswith(Outcome.NO_DISPLAY.value)
    return Check(
        "dialog",
        Status.FAIL,
        f"the running approver (pid {reply.pid}) denies every ask: {reply.unavailable}",
        details,
        fix=_NO_DISPLAY_FIX if no_display else _NO_PROGRAM_FIX,
    )


def dialog_check(
    reply: StatusReply | None,
    running: RunningApprover | None,
    manager_env: Mapping[str, str] | None,
) -> Check:
    """The approver's own answer when one runs; else a prediction from the environment the
    next approver will get."""
    if reply is not None:
        return reported_dialog(reply, running)
    if running is not None and running.readable:
        where = f"the running approver (pid {running.pid})"
        return check_dialog(running.env, where, running.dialog, running.tty)
    if manager_env is not None:
        return check_dialog(manager_env, "the systemd user manager")
    return check_dialog(os.environ, "this environment")
