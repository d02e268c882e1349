"""The per-install HMAC key (aip.shared.audit.install_key): made whole or not at all, the same
for everyone who uses it first at once, and refused with a clear error when it is not ours."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aip.shared.audit.install_key import load_or_create_key


def test_key_is_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "audit-hmac.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert (path.stat().st_mode & 0o777) == 0o600
    assert load_or_create_key(path) == key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit-hmac.key"]  # no temp left


def test_unsafe_or_bad_key_is_refused(tmp_path: Path) -> None:
    loose = tmp_path / "loose.key"
    loose.write_bytes(b"k" * 32)
    os.chmod(loose, 0o644)
    with pytest.raises(ValueError, match="0600"):
        load_or_create_key(loose)
    short = tmp_path / "short.key"
    short.write_bytes(b"k" * 5)
    os.chmod(short, 0o600)
    with pytest.raises(ValueError, match=r"5 bytes.*remove it"):
        load_or_create_key(short)
    theirs = tmp_path / "theirs.key"
    theirs.write_bytes(b"k" * 32)
    os.chmod(theirs, 0o600)
    if os.getuid() == 0:  # root-proof ownership test: chown to nobody
        os.chown(theirs, 65534, 65534)
        with pytest.raises(ValueError, match="owned by us"):
            load_or_create_key(theirs)
    link = tmp_path / "link.key"
    link.symlink_to(theirs)
    with pytest.raises(OSError):  # noqa: PT011 - ELOOP from O_NOFOLLOW
        load_or_create_key(link)
    dangling = tmp_path / "dangling.key"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OSError):  # noqa: PT011 - never created through a link
        load_or_create_key(dangling)
    assert not (tmp_path / "nowhere").exists()


KILLED_WHILE_WRITING = """
import os, sys
from pathlib import Path
from aip.shared.audit import install_key
os.write = lambda fd, data: os.kill(os.getpid(), 9)  # SIGKILL between create and write
install_key.load_or_create_key(Path(sys.argv[1]))
"""


def test_a_process_killed_while_making_the_key_leaves_no_short_key(tmp_path: Path) -> None:
    """A real process SIGKILLed after its file is created and before the key is in it (the
    old way left an empty key file there, and every later open of the audit log failed)."""
    path = tmp_path / "audit-hmac.key"
    done = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_WRITING, str(path)], capture_output=True, timeout=60
    )
    assert done.returncode == -9, done.stderr
    assert not path.exists()  # only its own temporary file, never the key's name
    key = load_or_create_key(path)
    assert len(key) == 32
    assert load_or_create_key(path) == key


FIRST_USE = """
import sys
from pathlib import Path
from aip.shared.audit.install_key import load_or_create_key
sys.stdin.read()  # all of them start together
print(load_or_create_key(Path(sys.argv[1])).hex())
"""


def test_first_uses_at_once_all_get_the_one_key(tmp_path: Path) -> None:
    for attempt in range(3):
        path = tmp_path / f"audit-hmac-{attempt}.key"
        outs = [tmp_path / f"out-{attempt}-{n}" for n in range(6)]
        procs = []
        for out in outs:
            with out.open("wb") as sink:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", FIRST_USE, str(path)],
                        stdin=subprocess.PIPE,
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                    )
                )
        for proc in procs:  # let them all go
            assert proc.stdin is not None
            proc.stdin.close()
        assert [proc.wait(60) for proc in procs] == [0] * len(procs)
        keys = {out.read_text().strip() for out in outs}
        assert keys == {path.read_bytes().hex()}


def test_someone_else_first_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between our check and our link another process made the key: we use theirs."""
    path = tmp_path / "audit-hmac.key"
    theirs = b"t" * 32
    real_link = os.link

    def they_were_first(src: str, dst: str) -> None:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, theirs)
        os.close(fd)
        real_link(src, dst)  # raises FileExistsError

    monkeypatch.setattr(os, "link", they_were_first)
    assert load_or_create_key(path) == theirs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit-hmac.key"]


def test_without_hard_links_the_key_is_made_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "no hard links here")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "audit-hmac.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert path.read_bytes() == key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit-hmac.key"]
