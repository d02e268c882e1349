"""The approver's session keys on disk: 0600 files that are whole or absent, read back after a
restart, and a session whose key file was never finished is not bound to a stale one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aip.approver.session_keys import SessionKeys

S = "0123456789abcdef"
KEY = "ab" * 32

KILLED = """
import os, sys
from pathlib import Path
from aip.approver.session_keys import SessionKeys
keys = SessionKeys(Path(sys.argv[1]))
os.write = lambda fd, data: os.kill(os.getpid(), 9)  # SIGKILL with the file made, not written
keys.bind(sys.argv[2], sys.argv[3])
"""


def test_a_key_is_stored_and_read_back_after_a_restart(tmp_path: Path) -> None:
    assert SessionKeys(tmp_path / "k").bind(S, KEY)
    path = tmp_path / "k" / f"{S}.key"
    assert path.read_text() == KEY
    assert path.stat().st_mode & 0o777 == 0o600
    later = SessionKeys(tmp_path / "k")  # a new approver
    assert later.key_for(S) == KEY
    assert not later.bind(S, "cd" * 32)  # a hello with another key is refused


def test_an_approver_killed_while_storing_a_key_leaves_none(tmp_path: Path) -> None:
    """Before, the key file was made empty and then written: a kill in between left a file
    that no later approver could read or replace, and that session's spool was rejected."""
    folder = tmp_path / "k"
    done = subprocess.run([sys.executable, "-c", KILLED, str(folder), S, KEY], capture_output=True)
    assert done.returncode == -9, done.stderr
    assert not (folder / f"{S}.key").exists()
    later = SessionKeys(folder)
    assert later.key_for(S) is None
    assert later.bind(S, KEY)  # the session's next hello stores it
    assert (folder / f"{S}.key").read_text() == KEY
