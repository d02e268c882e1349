"""System programs the tests run. .ci/run installs every one of them (apt-get), so a missing
program fails the test that needs it, with the fix, instead of skipping it unseen."""

from __future__ import annotations

import shutil


def required_tool(name: str, path: str | None = None) -> str:
    """The path of ``name`` on ``path`` (default: $PATH); AssertionError when it is missing."""
    found = shutil.which(name, path=path)
    if found is None:
        raise AssertionError(
            f"{name} is not installed; the tests need it (.ci/run installs it with apt-get)"
        )
    return found
