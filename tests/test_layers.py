"""The layout's rules, read from the imports of every module (lazy and type-only ones included).

- No import cycle of any kind between modules.
- The approver imports nothing from ``aip.proxy`` except inside ``aipctl`` (``aip.approver.ctl``
  parses an ``aip-proxy`` command line); the proxy imports nothing from ``aip.approver``; shared
  code imports neither.
- The daemon never imports ``aipctl``.
- No module is over 400 lines.
- Only ``aip.shared.audit.record`` builds decision records (one builder per record kind).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORTIONS = ("proxy", "approver", "shared")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for portion in PORTIONS:
        base = ROOT / portion
        for path in sorted((base / "aip").rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every ``aip`` module this one imports, at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("aip."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aip."):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return {m for m in out if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_of_any_kind() -> None:
    assert _cycles(_graph()) == []


def test_portions_import_only_what_they_may() -> None:
    bad = []
    for module, targets in _graph().items():
        for target in targets:
            if module.startswith("aip.shared.") and not target.startswith("aip.shared."):
                bad.append((module, target))
            if module.startswith("aip.proxy.") and target.startswith("aip.approver."):
                bad.append((module, target))
            daemon = module.startswith("aip.approver.") and not module.startswith(
                "aip.approver.ctl"
            )
            if daemon and target.startswith(("aip.proxy.", "aip.approver.ctl")):
                bad.append((module, target))
    assert bad == []


def test_no_module_over_the_split_point() -> None:
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def _builds_decision_records(source: str) -> list[int]:
    """Lines where a dict gets both ``decision`` and ``reason``: a dict display, a ``dict()``
    call, or a ``["decision"]`` subscript store (the audit decision record's pair)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        keys: set[object] = set()
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            keys = {k.arg for k in node.keywords} if node.func.id == "dict" else set()
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            keys = {"decision", "reason"} if _constant(node.slice) == "decision" else set()
        if {"decision", "reason"} <= keys:
            found.append(node.lineno)
    return found


def _constant(node: ast.expr) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def test_only_the_audit_record_module_builds_decision_records() -> None:
    builders = {
        name: lines
        for name, path in _modules().items()
        if (lines := _builds_decision_records(path.read_text(encoding="utf-8")))
    }
    assert set(builders) == {"aip.shared.audit.record"}


def test_the_builder_check_sees_each_spelling() -> None:
    assert _builds_decision_records('r = {"decision": d, "reason": x, "tool": t}') == [1]
    assert _builds_decision_records("r = dict(decision=d, reason=x)") == [1]
    assert _builds_decision_records('r = {}\nr["decision"] = d') == [2]
    assert _builds_decision_records('r = {"decision": d}\ndata = {"reason": x}') == []


def test_the_checker_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_readme_layout_names_every_package() -> None:
    """README's Layout map cannot rot: every package folder is a row, and every row exists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([\w/]+)/` \|", section, re.MULTILINE))
    folders = {
        str(d.relative_to(ROOT))
        for portion in PORTIONS
        for d in (ROOT / portion / "aip" / portion).glob("**/")
        if d.name != "__pycache__" and any(f.is_file() for f in d.iterdir())
    }
    assert rows == folders
