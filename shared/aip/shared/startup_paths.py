"""Where ``aipctl approver install`` puts the files that start ``aip-approver`` at login.

Shared because two sides need the same answer: aipctl writes and removes them, and the proxy's
sandbox makes them read-only for the MCP server (a server that could rewrite the approver's
command line could start it with a dialog that always allows).
"""

from __future__ import annotations

import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

UNIT_NAME: Final = "aip-approver.service"
DESKTOP_NAME: Final = "aip-approver.desktop"
LAUNCHD_LABEL: Final = "io.aip.approver"


def config_home() -> Path:
    value = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec: a relative value is invalid and must be ignored.
    return Path(value) if value and os.path.isabs(value) else Path.home() / ".config"


def unit_path() -> Path:
    return config_home() / "systemd" / "user" / UNIT_NAME


def desktop_path() -> Path:
    return config_home() / "autostart" / DESKTOP_NAME


def plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"


def startup_files() -> tuple[Path, ...]:
    """Every place a start-up file may be, whichever method installed it."""
    return unit_path(), desktop_path(), plist_path()
