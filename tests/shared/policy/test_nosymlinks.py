"""openat2(RESOLVE_NO_SYMLINKS) in the protected-path check (aip.shared.policy.nosymlinks):
True only when the kernel's walk met no symlink; a symlink swapped in between two checks is
seen by the second, with the call available and without it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from aip.shared.policy import nosymlinks, protected_resolve
from aip.shared.policy.protected import ProtectedRoots

pytestmark = pytest.mark.skipif(not protected_resolve.KERNEL_RESOLVE, reason="Linux /proc only")


@pytest.fixture(params=["openat2", "without"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "without":
        monkeypatch.setattr(nosymlinks, "_state", [None])
    return str(request.param)


def test_openat2_is_used_here() -> None:
    """This machine (Linux x86_64/aarch64, kernel >= 5.6) takes the one-call path."""
    assert platform.machine() in ("x86_64", "aarch64")
    assert nosymlinks.walk_without_symlinks("/")
    assert (nosymlinks._state or nosymlinks._build())[0] is not None


def test_answers(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "ln").symlink_to(tmp_path / "d")
    (tmp_path / "dangle").symlink_to(tmp_path / "nowhere")
    walk = nosymlinks.walk_without_symlinks
    assert walk(f"{tmp_path}/d")
    assert walk(f"{tmp_path}/d/f")
    assert walk(f"{tmp_path}/d/missing/deeper")  # missing before any symlink
    assert walk(f"{tmp_path}/d/f/x")  # ENOTDIR: a file on the way
    assert not walk(f"{tmp_path}/ln")  # the last name a symlink
    assert not walk(f"{tmp_path}/ln/f")  # a symlink on the way
    assert not walk(f"{tmp_path}/ln/missing")
    assert not walk(f"{tmp_path}/dangle")
    assert not walk("/proc/self/fd")  # /proc/self is a symlink
    assert not walk(f"{tmp_path}/d\x00/x")


def test_an_existing_path_whose_parent_becomes_a_symlink_is_seen(tmp_path: Path, mode: str) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("k")
    work = tmp_path / "work"
    work.mkdir()
    (work / "key").write_text("harmless")
    r = ProtectedRoots([str(secret)], "/", home="/home/u", case_insensitive=False)
    assert r.hit(f"{work}/key") is None
    (work / "key").unlink()
    work.rmdir()
    work.symlink_to(secret)  # swapped between two calls: the same string now leads inside
    assert r.hit(f"{work}/key") is not None
    work.unlink()
    work.mkdir()
    assert r.hit(f"{work}/key") is None  # missing again, as written
    (work / "key").symlink_to(secret / "key")  # the last name a symlink into it
    assert r.hit(f"{work}/key") is not None


@pytest.mark.parametrize(
    "rel", ["d", "d/f", "d/missing/x", "d/f/x", "ln", "ln/f", "ln/missing", "dangle", "loop/x"]
)
def test_same_answer_as_realpath(tmp_path: Path, mode: str, rel: str) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "ln").symlink_to(tmp_path / "d")
    (tmp_path / "dangle").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop").symlink_to("loop")
    path = f"{tmp_path}/{rel}"
    want = protected_resolve.collapse(os.path.realpath(path))
    assert protected_resolve.realpath(path, path) == want
    assert protected_resolve.realpath(path) == want
