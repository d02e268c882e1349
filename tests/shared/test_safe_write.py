"""aip.shared.safe_write: a new file is all there or not there, a planted link is never
followed, and a replaced link is replaced itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aip.shared.safe_write import replace_file, write_new


def test_write_new_makes_the_file_whole_with_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "key"
    old = os.umask(0o077)
    try:
        write_new(path, b"x" * 100_000, 0o640)  # the umask neither narrows nor widens it
    finally:
        os.umask(old)
    assert path.read_bytes() == b"x" * 100_000
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["key"]  # no temporary file left


def test_write_new_never_replaces_anything(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"first")
    with pytest.raises(FileExistsError):
        write_new(path, b"second", 0o600)
    assert path.read_bytes() == b"first"
    target = tmp_path / "elsewhere"
    link = tmp_path / "planted"
    link.symlink_to(target)  # dangling: following it would create the target
    with pytest.raises(FileExistsError):
        write_new(link, b"data", 0o600)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key", "planted"]


KILLED = """
import os, sys
from pathlib import Path
from aip.shared import safe_write
os.write = lambda fd, data: os.kill(os.getpid(), 9)  # SIGKILL with the file made, not written
safe_write.write_new(Path(sys.argv[1]), b"data", 0o600)
"""


def test_a_process_killed_in_write_new_leaves_no_file_at_the_name(tmp_path: Path) -> None:
    path = tmp_path / "key"
    done = subprocess.run([sys.executable, "-c", KILLED, str(path)], capture_output=True)
    assert done.returncode == -9, done.stderr
    assert not path.exists()  # not an empty file: the next maker can still make it
    write_new(path, b"data", 0o600)
    assert path.read_bytes() == b"data"


def test_replace_file_replaces_a_link_itself(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"theirs")
    link = tmp_path / "name"
    link.symlink_to(target)
    replace_file(link, b"ours", 0o600)
    assert not link.is_symlink()
    assert link.read_bytes() == b"ours"
    assert target.read_bytes() == b"theirs"
