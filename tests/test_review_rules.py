"""The mechanical part of docs/development.md: aipctl prints only through its console module
and writes files only through its safe-files module."""

from __future__ import annotations

import ast
from pathlib import Path

CTL = Path(__file__).resolve().parents[1] / "approver" / "aip" / "approver" / "ctl"
WRITERS = {"write_text", "write_bytes", "copy", "copy2", "copyfile", "mkstemp", "symlink_to"}


def _calls(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "print":
                found.append((node.lineno, "print"))
            if isinstance(func, ast.Attribute):
                target = ast.unparse(func.value)
                if func.attr == "write" and target in ("sys.stdout", "sys.stderr"):
                    found.append((node.lineno, f"{target}.write"))
                if func.attr in WRITERS:
                    found.append((node.lineno, func.attr))
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in ("open", "fdopen") and any(
                isinstance(a, ast.Constant) and isinstance(a.value, str) and "w" in a.value
                for a in [*node.args, *(k.value for k in node.keywords)]
            ):
                found.append((node.lineno, "open for writing"))
    return found


def test_aipctl_prints_and_writes_only_through_its_two_gates() -> None:
    offenders = {
        f"{path.name}:{line}": what
        for path in sorted(CTL.glob("*.py"))
        if path.name not in ("console.py", "safe_files.py")
        for line, what in _calls(path)
    }
    assert offenders == {}


def test_the_rule_checker_sees_an_offender(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nsys.stdout.write('x')\nprint(1)\nopen('f', 'w')\n")
    assert [w for _, w in _calls(bad)] == ["sys.stdout.write", "print", "open for writing"]
