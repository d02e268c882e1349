"""Policy lookup (never the current directory) and file trust checks (root-proof: chown)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from aip.shared.errors import PolicyError
from aip.shared.policy.file import check_policy_file_safety, find_policy_path
from aip.shared.policy.load import load_policy
from tests.shared.enginekit import wrap

GOOD = wrap("allowed_tools: [read_file]")


def _nobody() -> int:
    return pwd.getpwnam("nobody").pw_uid


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to nobody needs root")


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    path.chmod(0o600)
    return path


def test_cli_value_wins(tmp_path: Path) -> None:
    env = {"AIP_POLICY": "/env/p.yaml", "HOME": str(tmp_path)}
    assert find_policy_path("/cli/p.yaml", env) == Path("/cli/p.yaml")


def test_relative_cli_value_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_policy_path("p.yaml", {}) == tmp_path / "p.yaml"


def test_env_then_default(tmp_path: Path) -> None:
    assert find_policy_path(None, {"AIP_POLICY": "/env/p.yaml"}) == Path("/env/p.yaml")
    default = tmp_path / ".config" / "aip" / "policy.yaml"
    default.parent.mkdir(parents=True)
    default.write_text(GOOD)
    assert find_policy_path(None, {"HOME": str(tmp_path), "AIP_POLICY": ""}) == default


def test_never_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "policy.yaml").write_text(GOOD)
    (tmp_path / "agent.yaml").write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    with pytest.raises(PolicyError) as info:
        find_policy_path(None, {"HOME": str(home)})
    assert "no policy" in str(info.value)
    assert "allow-all" in str(info.value)
    assert str(home / ".config" / "aip" / "policy.yaml") in str(info.value)


def test_good_file_passes(policy_file: Path) -> None:
    check_policy_file_safety(policy_file)
    assert load_policy(policy_file).allowed_tools == {"read_file"}


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666, 0o622])
def test_group_or_world_writable_is_refused(policy_file: Path, mode: int) -> None:
    policy_file.chmod(mode)  # the mode bits are checked, not access(): root-proof
    with pytest.raises(PolicyError, match="group- or world-writable"):
        check_policy_file_safety(policy_file)
    with pytest.raises(PolicyError, match="group- or world-writable"):
        load_policy(policy_file)


@needs_root
def test_foreign_owner_is_refused(policy_file: Path) -> None:
    os.chown(policy_file, _nobody(), -1)
    with pytest.raises(PolicyError, match=f"owned by uid {_nobody()}"):
        load_policy(policy_file)


@needs_root
def test_symlink_to_foreign_file_is_refused(policy_file: Path, tmp_path: Path) -> None:
    os.chown(policy_file, _nobody(), -1)
    link = tmp_path / "link.yaml"
    link.symlink_to(policy_file)
    with pytest.raises(PolicyError, match="owned by uid"):
        check_policy_file_safety(link)


@needs_root
def test_foreign_symlink_to_good_file_is_refused(policy_file: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.yaml"
    link.symlink_to(policy_file)
    os.lchown(link, _nobody(), -1)
    with pytest.raises(PolicyError, match="symlink owned by uid"):
        load_policy(link)


def test_own_symlink_to_good_file_is_fine(policy_file: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.yaml"
    link.symlink_to(policy_file)
    pol = load_policy(link)
    assert pol.path == str(link)


def test_symlink_to_writable_file_is_refused(policy_file: Path, tmp_path: Path) -> None:
    policy_file.chmod(0o666)
    link = tmp_path / "link.yaml"
    link.symlink_to(policy_file)
    with pytest.raises(PolicyError, match="world-writable"):
        load_policy(link)


def test_directory_and_fifo_are_refused_without_hanging(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not a regular file"):
        load_policy(tmp_path)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(PolicyError, match="not a regular file"):
        load_policy(fifo)


def test_safety_can_be_skipped_for_explicit_checks(policy_file: Path) -> None:
    policy_file.chmod(0o666)
    assert load_policy(policy_file, check_safety=False).name == "test"
