"""The real MCP servers from npm that security tests run behind ``aip-proxy``.

``.ci/run`` installs them with npm into ``$AIP_TEST_NPM`` (default ``~/.cache/aip-test-npm``);
a test that needs one calls ``npm_server(name)`` and gets its command line. Where they are not
installed the test fails with the command that installs them: these tests are part of the
suite, never silently skipped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PACKAGES = {
    "filesystem": "@modelcontextprotocol/server-filesystem",
    "everything": "@modelcontextprotocol/server-everything",
}


def npm_root() -> Path:
    return Path(os.environ.get("AIP_TEST_NPM") or Path.home() / ".cache" / "aip-test-npm")


def npm_server(name: str) -> list[str]:
    """The command line that starts the installed server ``name`` (filesystem, everything)."""
    program = npm_root() / "node_modules" / ".bin" / f"mcp-server-{name}"
    node = shutil.which("node")
    if node is None or not program.exists():
        raise AssertionError(
            f"the npm server {PACKAGES[name]} is not installed: run "
            f"`npm install --prefix {npm_root()} {' '.join(PACKAGES.values())}` (.ci/run does)"
        )
    return [str(program)]
