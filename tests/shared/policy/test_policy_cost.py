"""Hostile policies (issue 12.4), through the public command lines: a total cost bound on the
policy's patterns, huge numbers, glob-like method names and unexpanded variables are load
errors with file:line:key, never a minute of CPU, a traceback or a silent no-op."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
HEAD = "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata: {name: hostile}\nspec:\n"


def check(tmp_path: Path, body: str) -> tuple[subprocess.CompletedProcess[str], float]:
    path = tmp_path / "policy.yaml"
    path.write_text(HEAD + body)
    path.chmod(0o600)
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "aipctl"), "policy", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, time.monotonic() - started


def test_expensive_patterns_are_refused_quickly_naming_the_rule(tmp_path: Path) -> None:
    # Each pattern compiles (47,204 RE2 instructions); 300 of them took over a minute and
    # 1.2 GB before the policy-wide bound.
    rules = "".join(
        f"    - tool: t{i}\n      action: allow\n      allow_args: {{a: '\\PN{{100}}'}}\n"
        for i in range(300)
    )
    done, seconds = check(tmp_path, "  allowed_tools: [x]\n  tool_rules:\n" + rules)
    assert done.returncode == 1, done.stdout
    assert "RE2 instructions, over the limit" in done.stdout + done.stderr
    assert "spec.tool_rules[" in done.stdout + done.stderr  # the rule that crossed the line
    assert "Traceback" not in done.stderr
    assert seconds < 15


def test_one_pattern_too_large_is_refused(tmp_path: Path) -> None:
    body = (
        "  tool_rules:\n    - tool: t\n      action: allow\n      allow_args: {a: '\\PN{1000}'}\n"
    )
    done, _ = check(tmp_path, body)
    assert done.returncode == 1
    assert "pattern too large" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            "  tool_rules:\n    - tool: t\n      action: allow\n      rate_limit: '"
            + "9" * 5000
            + "/second'\n",
            "the count must be between",
        ),
        ("  dlp: {max_scan_size: '" + "9" * 5000 + "MB'}\n", "must be between 1 byte"),
        ("  denied_methods: ['resources/*']\n", "globs are not supported"),
        ("  allowed_methods: ['tools/*']\n", "globs are not supported"),
        ("  protected_paths: ['$XDG_CONFIG_HOME/x']\n", "$XDG_CONFIG_HOME is not expanded"),
        ("  protected_paths: ['${XDG_DATA_HOME}/x']\n", "is not expanded"),
    ],
)
def test_hostile_values_are_load_errors(tmp_path: Path, body: str, words: str) -> None:
    done, _ = check(tmp_path, "  allowed_tools: [t]\n" + body)
    assert done.returncode == 1, done.stdout
    assert words in done.stdout + done.stderr
    assert re.search(r"policy\.yaml:\d+: spec\.", done.stdout)  # file:line: key
    assert "Traceback" not in done.stderr


def test_home_and_star_still_load(tmp_path: Path) -> None:
    done, _ = check(
        tmp_path,
        "  allowed_tools: [t]\n  allowed_methods: ['*']\n  denied_methods: ['*']\n"
        "  protected_paths: ['$HOME/.ssh', '${HOME}/.aws', '~/.gnupg']\n",
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_proxy_refuses_to_start_on_an_expensive_policy(tmp_path: Path) -> None:
    rules = "".join(
        f"    - tool: t{i}\n      action: allow\n      allow_args: {{a: '\\PN{{100}}'}}\n"
        for i in range(300)
    )
    path = tmp_path / "policy.yaml"
    path.write_text(HEAD + "  tool_rules:\n" + rules)
    path.chmod(0o600)
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "aip-proxy"), "--policy", str(path), "--", "cat"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode != 0
    assert "RE2 instructions" in done.stderr
    assert time.monotonic() - started < 15
