"""The ``aipctl`` dispatcher: groups, usage errors, and what happens to words after ``--``."""

from __future__ import annotations

from pathlib import Path

from tests.support.aipctl import aipctl

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "policies" / "hitl-example.yaml"


def test_no_command_is_a_usage_error() -> None:
    done = aipctl()
    assert done.returncode == 2
    assert "COMMAND" in done.stderr


def test_groups_are_listed() -> None:
    done = aipctl("--help")
    assert done.returncode == 0
    for group in ("policy", "approver", "config", "doctor"):
        assert group in done.stdout


def test_a_group_without_action_shows_its_usage() -> None:
    for group in ("policy", "approver"):
        done = aipctl(group)
        assert done.returncode == 2
        assert "ACTION" in done.stderr


def test_double_dash_keeps_its_meaning_for_file_arguments() -> None:
    done = aipctl("policy", "check", "--", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
