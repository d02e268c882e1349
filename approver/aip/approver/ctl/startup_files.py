"""The files that start ``aip-approver`` with a desktop login, rendered from ``templates/``.

Pure functions: where each file goes, and its text with the approver's command line quoted
for that format (systemd unit, XDG autostart entry, launchd plist, Windows instructions).
Each value is escaped for its format; nothing here runs a command or writes a file.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import plistlib
import re
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aip.shared.startup_paths import (
    DESKTOP_NAME,
    LAUNCHD_LABEL,
    UNIT_NAME,
    desktop_path,
    plist_path,
    unit_path,
)

DISTRIBUTION: Final = "aip-approval"
TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
# The first line of the unit and the desktop entry: uninstall removes only files carrying it.
MARKER: Final = "# Written by `aipctl approver install`"

# Arguments made only of these need no quoting in a unit's ExecStart or a desktop Exec line.
_PLAIN = re.compile(r"[A-Za-z0-9_@+=:,./-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class StartupFile:
    method: str  # systemd | autostart | launchd
    path: Path
    text: str


def installed_program(script: str, module: str) -> list[str]:
    """How to start one of our console scripts, absolute, from this very installation: the
    script its package record lists (``pip install --user`` puts it in ~/.local/bin, not beside
    the interpreter), else the one beside this interpreter, else ``python -m module``. Never a
    PATH lookup, which may find another installation or a version manager's shim."""
    names = (script, f"{script}.exe")
    candidates: list[Path] = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution(DISTRIBUTION)
        candidates += [
            Path(os.path.normpath(str(dist.locate_file(f))))
            for f in dist.files or ()
            if f.name in names and f.parent.name in ("bin", "Scripts")
        ]
    exe = Path(sys.executable)
    candidates += [exe.parent / name for name in names]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return [str(path.absolute())]
    return [str(exe.absolute()), "-m", module]


def approver_argv(extra: list[str]) -> list[str]:
    return [*installed_program("aip-approver", "aip.approver"), *extra]


def launchd_log_path() -> Path:
    return Path.home() / "Library" / "Logs" / "aip" / "approver.log"


def installed_files() -> list[tuple[str, Path]]:
    """Start-up files present for this user (any method), for uninstall and doctor."""
    candidates = [
        ("systemd", unit_path()),
        ("autostart", desktop_path()),
        ("launchd", plist_path()),
    ]
    return [(m, p) for m, p in candidates if p.exists() or p.is_symlink()]


def _template(name: str) -> string.Template:
    return string.Template((TEMPLATES / name).read_text(encoding="utf-8"))


def systemd_quote(arg: str) -> str:
    """One ExecStart word: ``%`` is a specifier and ``$`` a variable to systemd, so both are
    doubled; anything else unusual goes in double quotes with C escapes."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.fullmatch(arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"')
    # Every control character as a C escape: a raw CR or newline would end the line (systemd
    # then refuses the unit, or reads what follows as a key of its own).
    escaped = _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", escaped)
    return f'"{escaped}"'


def desktop_quote(arg: str) -> str:
    """One Exec word (Desktop Entry spec: quoting rules, then the string-type escape of ``\\``,
    and ``%`` doubled so no field code is expanded)."""
    arg = arg.replace("%", "%%")
    if _PLAIN.fullmatch(arg):
        return arg
    if _CONTROL.search(arg):
        # The Desktop Entry format has no escape a generator reliably reads back for these,
        # and a CR or newline would start a key of its own: refused, never written.
        raise ValueError(f"cannot put a control character in a desktop Exec argument: {arg!r}")
    inner = re.sub(r'(["`$\\])', r"\\\1", arg)
    return '"' + inner.replace("\\", "\\\\") + '"'


def render_unit(argv: list[str]) -> StartupFile:
    text = _template(UNIT_NAME).substitute(exec_start=" ".join(systemd_quote(a) for a in argv))
    return StartupFile("systemd", unit_path(), text)


def render_desktop(argv: list[str]) -> StartupFile:
    text = _template(DESKTOP_NAME).substitute(exec_line=" ".join(desktop_quote(a) for a in argv))
    return StartupFile("autostart", desktop_path(), text)


def render_plist(argv: list[str]) -> StartupFile:
    if any(_CONTROL.search(a) for a in argv):
        # XML readers turn a CR into a newline and refuse most other controls: the agent
        # would not start with the arguments given.
        raise ValueError(f"cannot put a control character in a launchd argument: {argv!r}")
    # plistlib does the XML escaping; the template fixes every other key.
    data = plistlib.loads((TEMPLATES / f"{LAUNCHD_LABEL}.plist").read_bytes())
    data["ProgramArguments"] = list(argv)
    data["StandardErrorPath"] = str(launchd_log_path())
    text = plistlib.dumps(data, sort_keys=False).decode("utf-8")
    return StartupFile("launchd", plist_path(), text)


def render_windows(argv: list[str]) -> str:
    target, rest = argv[0], argv[1:]
    arguments = subprocess.list2cmdline(rest)
    return _template("windows-startup.txt").substitute(
        target=target.replace("'", "''"),
        arguments=arguments.replace("'", "''"),
        task_command=subprocess.list2cmdline(argv).replace('"', '\\"'),
    )


def written_by_us(method: str, path: Path) -> bool:
    """True when ``path`` is a file ``aipctl approver install`` wrote (safe to replace/remove)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if method == "launchd":
        try:
            return bool(plistlib.loads(data).get("Label") == LAUNCHD_LABEL)
        except (plistlib.InvalidFileException, ValueError, AttributeError):
            return False
    return data.startswith(MARKER.encode())
