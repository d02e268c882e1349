"""Issue 11 finding 2: the policy is read through the folder opened at start. A folder moved
away and another put in its place, a re-pointed symlink, or a symlink planted as the file are
refused; edits in place (also by rename, as editors save) and a restored file are read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aip.shared.errors import PolicyError
from aip.shared.policy.file import PolicyPin
from aip.shared.policy.load import load_policy
from tests.support.proxyproc import write_policy


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    (tmp_path / "cfg" / "aip").mkdir(parents=True)
    return write_policy(tmp_path / "cfg" / "aip", "allowed_tools: [a]", "policy")


def test_edits_in_place_and_by_rename_are_read(policy: Path) -> None:
    pin = PolicyPin(policy)
    assert load_policy(policy, pin=pin).allowed_tools == frozenset({"a"})
    write_policy(policy.parent, "allowed_tools: [b]", "new")
    os.replace(policy.parent / "new.yaml", policy)  # how editors save
    assert b"[b]" in pin.read()
    policy.unlink()
    with pytest.raises(PolicyError, match="not found"):
        pin.read()
    write_policy(policy.parent, "allowed_tools: [c]", "policy")
    assert b"[c]" in pin.read()


def test_a_renamed_ancestor_with_a_planted_folder_is_refused(policy: Path, tmp_path: Path) -> None:
    pin = PolicyPin(policy)
    planted = tmp_path / "evil" / "aip"
    planted.mkdir(parents=True)
    write_policy(planted, "allowed_tools: [evil]", "policy")
    (tmp_path / "cfg").rename(tmp_path / "cfg-old")
    (tmp_path / "evil").rename(tmp_path / "cfg")
    with pytest.raises(PolicyError, match="not the folder the policy was loaded from"):
        pin.read()
    # moved back: the very folder again
    (tmp_path / "cfg").rename(tmp_path / "evil")
    (tmp_path / "cfg-old").rename(tmp_path / "cfg")
    assert b"[a]" in pin.read()


def test_the_folder_replaced_by_a_symlink_elsewhere_is_refused(
    policy: Path, tmp_path: Path
) -> None:
    pin = PolicyPin(policy)
    other = tmp_path / "other"
    other.mkdir()
    write_policy(other, "allowed_tools: [evil]", "policy")
    policy.parent.rename(tmp_path / "moved")
    policy.parent.symlink_to(other)
    with pytest.raises(PolicyError, match="refused"):
        pin.read()


def test_a_symlink_planted_as_the_file_is_refused(policy: Path, tmp_path: Path) -> None:
    pin = PolicyPin(policy)
    evil = write_policy(tmp_path, "allowed_tools: [evil]", "evil")
    policy.unlink()
    policy.symlink_to(evil)
    with pytest.raises(PolicyError, match="refused"):
        pin.read()


def test_a_policy_given_through_a_symlink_is_pinned_at_its_target(
    policy: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link.yaml"
    link.symlink_to(policy)
    pin = PolicyPin(link)
    assert pin.folder == str(policy.parent)
    assert b"[a]" in pin.read()
    other = write_policy(tmp_path, "allowed_tools: [evil]", "other")
    link.unlink()
    link.symlink_to(other)  # re-pointed: the pin says so rather than follow
    with pytest.raises(PolicyError, match="a symlink changed"):
        pin.read()


def test_the_safety_checks_still_apply(policy: Path) -> None:
    pin = PolicyPin(policy)
    policy.chmod(0o666)
    with pytest.raises(PolicyError, match="writable"):
        pin.read()
    pin.close()
    with pytest.raises(PolicyError, match="closed"):
        pin.read()
