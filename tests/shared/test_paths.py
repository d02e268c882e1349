"""Default locations (DESIGN §3) and the owner/mode/symlink checks, root-proof (chown)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from aip.shared import paths
from aip.shared.errors import ConfigError


def test_defaults_follow_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(paths.sys, "platform", "linux")
    monkeypatch.delenv("AIP_APPROVER_ENDPOINT", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert paths.default_endpoint() == f"ipc://{tmp_path}/aip/approver.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert paths.runtime_dir() == Path(f"/tmp/aip-{os.getuid()}")
    monkeypatch.setenv("AIP_APPROVER_ENDPOINT", "ipc:///x/y.sock")
    assert paths.default_endpoint() == "ipc:///x/y.sock"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("AIP_AUDIT_LOG", raising=False)
    assert paths.default_audit_log() == tmp_path / "state" / "aip" / "aip-audit.jsonl"
    monkeypatch.setenv("AIP_AUDIT_LOG", "/l/a.jsonl")
    assert paths.default_audit_log() == Path("/l/a.jsonl")
    monkeypatch.delenv("AIP_POLICY", raising=False)
    assert paths.default_policy() == Path.home() / ".config" / "aip" / "policy.yaml"


def test_macos_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths.sys, "platform", "darwin")
    monkeypatch.setenv("TMPDIR", "/var/folders/xy/T/")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/ignored")
    assert paths.runtime_dir() == Path("/var/folders/xy/T/aip")
    assert paths.state_dir() == Path.home() / "Library" / "Logs" / "aip"


@pytest.mark.parametrize(
    "endpoint",
    ["tcp://127.0.0.1:5555", "ipc://@abstract", "ipc://relative/x.sock", "ipc:///" + "a" * 120],
)
def test_only_absolute_ipc_endpoints(endpoint: str) -> None:
    with pytest.raises(ConfigError):
        paths.socket_path(endpoint)


def test_lock_path_sits_beside_the_socket() -> None:
    assert paths.lock_path("ipc:///run/u/aip/approver.sock") == Path(
        "/run/u/aip/approver.sock.lock"
    )


def test_ensure_private_dir_creates_0700(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        made = paths.ensure_private_dir(tmp_path / "a" / "aip")
    finally:
        os.umask(old)
    assert made.stat().st_mode & 0o777 == 0o700
    assert paths.check_private_dir(made)[0] is paths.DirState.OK


def test_wrong_mode_symlink_and_file_are_refused(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(paths.UnsafePathError, match="mode 0755"):
        paths.ensure_private_dir(loose)
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(paths.UnsafePathError, match="symlink"):
        paths.ensure_private_dir(link)
    assert paths.check_private_dir(link)[0] is paths.DirState.UNTRUSTED
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(paths.UnsafePathError, match="not a directory"):
        paths.ensure_private_dir(afile)
    assert paths.check_private_dir(tmp_path / "absent")[0] is paths.DirState.MISSING


def test_a_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("chown needs root")
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    shutil.chown(other, "nobody")
    with pytest.raises(paths.UnsafePathError, match="owned by uid"):
        paths.ensure_private_dir(other)
    state, why = paths.check_private_dir(other)
    assert state is paths.DirState.UNTRUSTED
    assert "owned by uid" in why


def test_xdg_runtime_dir_itself_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o755)
    xdg.chmod(0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    with pytest.raises(paths.UnsafePathError, match="XDG_RUNTIME_DIR"):
        paths.ensure_private_dir(xdg / "aip")


def test_socket_problem(tmp_path: Path) -> None:
    assert "does not exist" in (paths.socket_problem(tmp_path / "none") or "")
    (tmp_path / "f").write_text("")
    assert "not a socket" in (paths.socket_problem(tmp_path / "f") or "")
