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


def test_every_group_builds_and_lists_the_same_help_line() -> None:
    # Only the group a command line names is imported; the full parser (every group's
    # module registered) must still build and keep each group's line from the one table.
    import argparse

    from aip.approver.ctl import main as ctl

    full = ctl.build_parser()
    (groups,) = [a for a in full._actions if isinstance(a, argparse._SubParsersAction)]
    listed = {c.dest: c.help for c in groups._choices_actions}
    assert listed == {name: line for name, line, _ in ctl.GROUPS}
    for name in listed:  # a stub has no arguments of its own; every real group has
        assert len(groups.choices[name]._actions) > 1, name


def test_a_command_imports_only_its_group() -> None:
    import ast

    from tests.support.freshpy import python_c

    code = (
        "import sys; from aip.approver.ctl import main as m;"
        "m.build_parser(m._group_named(['-v', 'policy', 'check', 'x']));"
        "print(sorted(n for n in sys.modules if n.startswith('aip.approver.ctl.')))"
    )
    loaded = ast.literal_eval(python_c(code))
    assert "aip.approver.ctl.policy" in loaded
    for other in ("audit", "doctor", "remote", "grants", "config", "approver_install"):
        assert f"aip.approver.ctl.{other}" not in loaded, other


def test_misspelt_group_lists_every_group() -> None:
    done = aipctl("polcy", "check")
    assert done.returncode == 2
    assert "invalid choice: 'polcy'" in done.stderr
    assert "'grants'" in done.stderr
