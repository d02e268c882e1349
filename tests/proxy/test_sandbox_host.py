"""aip.proxy.sandbox.host against the stdlib it stands in for: ``shutil.which``,
``tempfile``'s choice of folder and ``mkdtemp``, and ``glob`` for log families (the plan)."""

from __future__ import annotations

import glob
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aip.proxy.sandbox import host
from aip.proxy.sandbox.plan import _family


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Folders a/ b/ c/ with executables, a non-executable, a folder and a link of one name."""
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
    for path, mode in (("a/tool", 0o644), ("b/tool", 0o755), ("c/tool", 0o755), ("b/other", 0o700)):
        (tmp_path / path).write_text("#!/bin/sh\n")
        os.chmod(tmp_path / path, mode)
    (tmp_path / "a/dir").mkdir()
    (tmp_path / "c/dir").write_text("")
    os.chmod(tmp_path / "c/dir", 0o755)
    (tmp_path / "a/link").symlink_to(tmp_path / "b/other")
    (tmp_path / "a/dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "here").write_text("")
    os.chmod(tmp_path / "here", 0o755)
    monkeypatch.chdir(tmp_path)
    return tmp_path


NAMES = ["tool", "other", "dir", "link", "dangling", "absent", "here", "./here", "b/tool", "a/tool"]
PATHS = ["a:b:c", "c:b:a", "a", "", ":", "a::b", "b:b:a", "nowhere:a:b", "./a:b", "a/:c"]


@pytest.mark.parametrize("path", PATHS)
def test_which_is_shutil_which(tree: Path, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", path)
    for name in [*NAMES, str(tree / "b/tool"), str(tree / "a/tool"), str(tree / "a/dir")]:
        assert host.which(name) == shutil.which(name), (path, name)


def test_which_without_path_uses_cs_path(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATH")
    for name in ("sh", "true", "tool", "absent"):
        assert host.which(name) == shutil.which(name)
    assert host.which("sh") is not None  # CS_PATH names /bin or /usr/bin


def test_which_skips_a_file_it_may_not_run(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root os.access says X_OK for a file with any x bit; with none it says no to root too."""
    monkeypatch.setenv("PATH", f"{tree / 'a'}:{tree / 'b'}")
    assert host.which("tool") == str(tree / "b/tool")
    os.chmod(tree / "b/tool", stat.S_IRUSR)
    assert host.which("tool") is None
    assert shutil.which("tool") is None


@pytest.fixture
def fresh_tempfile() -> Iterator[None]:
    saved = tempfile.tempdir
    tempfile.tempdir = None  # tempfile caches its choice: make it choose again
    yield
    tempfile.tempdir = saved


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"TMPDIR": "{t}/x"},
        {"TMPDIR": "{t}/missing", "TMP": "{t}/y"},
        {"TEMP": "{t}/y/../x/", "TMP": "{t}/x"},
        {"TMPDIR": "{t}/file", "TEMP": "", "TMP": "{t}/y"},
    ],
)
def test_temp_roots_hold_what_tempfile_picks_in_its_order(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fresh_tempfile: None
) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "file").write_text("")
    for var in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value.format(t=tmp_path))
    roots = host.temp_roots()
    assert tempfile.gettempdir() in roots
    named = [os.path.abspath(os.environ[v]) for v in ("TMPDIR", "TEMP", "TMP") if os.environ.get(v)]
    assert roots == list(dict.fromkeys([*named, "/tmp", "/var/tmp", "/usr/tmp"]))
    made = host.private_temp_dir("aip-test-")
    try:
        assert os.path.dirname(made) == tempfile.gettempdir()  # mkdtemp's folder too
        assert os.path.basename(made).startswith("aip-test-")
        assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    finally:
        os.rmdir(made)


def test_private_temp_dir_falls_back_to_tempfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tempfile: None
) -> None:
    """No temp root takes a folder (missing, or a file): tempfile.mkdtemp decides and says why."""
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "file"))
    monkeypatch.setattr(host, "FIXED_TEMP_ROOTS", (str(tmp_path / "missing"),))
    tempfile.tempdir = str(tmp_path / "chosen")
    (tmp_path / "chosen").mkdir()
    made = host.private_temp_dir("aip-test-")
    assert os.path.dirname(made) == str(tmp_path / "chosen")
    tempfile.tempdir = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        host.private_temp_dir("aip-test-")


def test_private_temp_dir_names_are_new_each_time() -> None:
    made = [host.private_temp_dir("aip-test-") for _ in range(20)]
    try:
        assert len(set(made)) == 20
    finally:
        for path in made:
            os.rmdir(path)


@pytest.mark.parametrize("base", ["audit.jsonl", "a[b]*?.log", ".hidden", "x"])
def test_family_is_glob_of_the_base(tmp_path: Path, base: str) -> None:
    names = ["", ".1", ".torn-2", ".", "x", "..2", ".d"]
    for suffix in names:
        (tmp_path / (base + suffix)).write_text("")
    (tmp_path / "other.1").write_text("")
    (tmp_path / ("." + base + ".1")).write_text("")
    (tmp_path / (base + ".dir")).mkdir()
    (tmp_path / (base + ".link")).symlink_to(tmp_path / "nowhere")
    path = str(tmp_path / base)
    assert _family(path) == sorted(glob.glob(glob.escape(path) + ".*"))
    assert _family(str(tmp_path / "missing/x")) == []
