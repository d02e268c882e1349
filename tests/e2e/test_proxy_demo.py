"""``scripts/demo`` (the README's demo command) runs and shows each kind of decision."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def _demo(*args: str) -> str:
    env = {  # no display: the demo would otherwise start a private approver with dialogs
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("AIP_") or k == "AIP_FORK_SERVER")  # off: leave no server behind
        and k not in ("DISPLAY", "WAYLAND_DISPLAY")
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_demo_without_approver() -> None:
    out = _demo()
    assert "tools/list as the agent sees it: read_file, write_file, postgres_query" in out
    assert "ALLOWED -> Buy milk." in out
    assert "BLOCKED -32007 Access denied: protected path [protected_path]" in out
    assert "BLOCKED -32001 Forbidden [denied_tool]" in out
    assert "BLOCKED -32001 Forbidden [blocked_by_rule]" in out
    assert "BLOCKED -32002 Human approval unavailable [approver_unavailable]" in out


def test_demo_with_a_private_approver_that_allows() -> None:
    out = _demo("--answer", "allow")
    assert "ALLOWED -> INSERT 0 1 (id 4)" in out
    assert '"reason": "human approved"' in out
