"""Backend selection for ``--dialog`` (DESIGN §3), decided once at start-up.

``auto``: the first GUI backend present for the platform when a display exists (Linux:
zenity, kdialog, Xdialog), else ``terminal`` when stdin and stdout are a TTY, else none:
every ask is then denied at once (``no_display``, or ``dialog_error`` with no backend).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aip.approver.dialogs.base import SAFE_PATH, Backend, binary_problem
from aip.approver.dialogs.exec_program import ExecProgram
from aip.approver.dialogs.gui import Zenity
from aip.approver.dialogs.kdialog_xdialog import Kdialog, Xdialog
from aip.approver.dialogs.native import OSASCRIPT, Osascript
from aip.approver.dialogs.powershell import PowerShell, powershell_path
from aip.approver.dialogs.terminal import Terminal
from aip.shared.errors import ConfigError
from aip.shared.outcomes import Outcome

CHOICES = ("auto", "zenity", "kdialog", "xdialog", "osascript", "powershell", "terminal")
_LINUX_GUI: tuple[tuple[str, str, type[Zenity | Kdialog | Xdialog]], ...] = (
    ("zenity", "zenity", Zenity),
    ("kdialog", "kdialog", Kdialog),
    ("xdialog", "Xdialog", Xdialog),
)


@dataclass(frozen=True, slots=True)
class Choice:
    """The backend, or None with the outcome every ask gets and why."""

    backend: Backend | None
    unavailable: Outcome | None = None
    why: str = ""


def choose(
    spec: str,
    *,
    platform: str = sys.platform,
    env: Mapping[str, str] | None = None,
    tty: bool | None = None,
) -> Choice:
    env = os.environ if env is None else env
    if tty is None:
        tty = os.isatty(0) and os.isatty(1)
    if spec.startswith("exec:"):
        return Choice(ExecProgram.from_spec(spec))
    if spec not in CHOICES:
        raise ConfigError(
            f"--dialog {spec!r}: expected one of {', '.join(CHOICES)} or exec:PROGRAM"
        )
    display = bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    if spec == "terminal":
        if not tty:
            return Choice(None, Outcome.NO_DISPLAY, "--dialog terminal but stdin/stdout is no TTY")
        return Choice(Terminal())
    if spec == "osascript":
        return Choice(Osascript(_checked(Path(OSASCRIPT))))
    if spec == "powershell":
        return Choice(PowerShell(_checked(Path(powershell_path(env.get("SystemRoot"))))))
    if spec != "auto":
        for name, binary, cls in _LINUX_GUI:
            if name == spec:
                found = shutil.which(binary, path=SAFE_PATH)
                if found is None:
                    raise ConfigError(f"--dialog {spec}: {binary} not found in {SAFE_PATH}")
                backend = cls(_checked(Path(found)))
                if not display:
                    return Choice(None, Outcome.NO_DISPLAY, "neither DISPLAY nor WAYLAND_DISPLAY")
                return Choice(backend)
    return _auto(platform, env, display, tty)


def _auto(platform: str, env: Mapping[str, str], display: bool, tty: bool) -> Choice:
    gui: Backend | None = None
    if platform == "darwin":
        if Path(OSASCRIPT).exists() and binary_problem(Path(OSASCRIPT)) is None:
            gui = Osascript()
        display = True  # a LaunchAgent in the login session can show dialogs
    elif platform == "win32":
        path = Path(powershell_path(env.get("SystemRoot")))
        gui = PowerShell(str(path)) if path.exists() else None
        display = True
    elif display:
        for _name, binary, cls in _LINUX_GUI:
            found = shutil.which(binary, path=SAFE_PATH)
            if found is not None and binary_problem(Path(found)) is None:
                gui = cls(found)
                break
    if gui is not None and display:
        return Choice(gui)
    if tty:
        return Choice(Terminal())
    if not display:
        return Choice(None, Outcome.NO_DISPLAY, "no display and no terminal")
    return Choice(None, Outcome.DIALOG_ERROR, "a display but no dialog program (install zenity)")


def _checked(path: Path) -> str:
    problem = binary_problem(path)
    if problem is not None:
        raise ConfigError(f"dialog program refused: {problem}")
    return str(path)
