"""macOS: a ``sandbox-exec`` profile that denies the plan's paths to the server's tree.

Everything is allowed, then reading and writing are denied on each hidden folder (``subpath``)
and file (``literal``), and writing on aip's own files. Children inherit the profile. There
is no PID namespace here: the proxy's process-group kill stays the way the tree ends.
"""

from __future__ import annotations

from aip.proxy.sandbox.plan import Plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

SANDBOX_EXEC: Final = "/usr/bin/sandbox-exec"


def quote(path: str) -> str:
    """``path`` as an SBPL (TinyScheme) string literal: backslash and double quote escaped,
    so no path can end the string and add a rule of its own."""
    if "\0" in path:
        raise ValueError("a path with a NUL byte")
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def profile(plan: Plan) -> str:
    lines = ["(version 1)", "(allow default)"]
    for path in plan.read_only:
        lines.append(f"(deny file-write* (subpath {quote(path)}))")
    for path in plan.hide_dirs:
        lines.append(f"(deny file-read* file-write* (subpath {quote(path)}))")
    for path in plan.hide_files:
        lines.append(f"(deny file-read* file-write* (literal {quote(path)}))")
    return "\n".join(lines) + "\n"


def argv(plan: Plan, program: str = SANDBOX_EXEC) -> list[str]:
    """The prefix that runs a command under the profile (append ``--`` and the command)."""
    return [program, "-p", profile(plan)]
