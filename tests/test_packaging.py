"""Packaging: the three portions merge into one ``aip`` namespace and nothing else is importable."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_isolated(code: str) -> subprocess.CompletedProcess[str]:
    # -P: the current directory is not put on sys.path, as for an installed console script.
    return subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_only_aip_namespace_is_importable() -> None:
    ok = _run_isolated(
        "import aip.shared.outcomes, aip.proxy.approval.api; import aip; print(aip.__file__)"
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "None", "aip must be a namespace package (no aip/__init__.py)"
    for stray in ("shared", "proxy", "approver"):
        bad = _run_isolated(f"import {stray}")
        assert bad.returncode != 0, f"`import {stray}` must fail"
        assert "ModuleNotFoundError" in bad.stderr


def test_no_aip_init_anywhere() -> None:
    assert not list(ROOT.glob("*/aip/__init__.py"))


@pytest.mark.e2e
def test_wheel_installs_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("aip_approval-*.whl")
    with zipfile.ZipFile(wheel) as built_wheel:
        names = set(built_wheel.namelist())
    for module in (
        "aip/proxy/cli.py",
        "aip/approver/cli.py",
        "aip/approver/ctl/main.py",
        "aip/shared/outcomes.py",
        "aip/shared/audit/schema.json",
        "aip/approver/ctl/templates/aip-approver.service",
    ):
        assert module in names
    assert "aip/__init__.py" not in names
    assert not any(n.startswith(("shared/", "proxy/", "approver/")) for n in names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    # Install the wheel's files without dependencies: the import probe below needs only stdlib.
    inst = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert inst.returncode == 0, inst.stderr
    probe = subprocess.run(
        [str(py), "-P", "-c", "import aip.shared.outcomes as o; print(len(o.ROWS))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    for script in ("aip-proxy", "aip-approver", "aipctl"):
        assert (env_dir / "bin" / script).exists()
    # aip-proxy is our own file (proxy/bin/aip-proxy), its shebang pointed at this venv by pip.
    proxy_script = (env_dir / "bin" / "aip-proxy").read_text()
    assert proxy_script.startswith(f"#!{env_dir / 'bin' / 'python'}")
    assert "from aip.proxy.cli import main" in proxy_script
    assert "import re" not in proxy_script


def _requirement_names(specs: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower() for spec in specs}


def test_dev_extra_lists_everything_the_tests_import_and_run() -> None:
    """A fresh venv with `pip install -e '.[dev]'` (what .ci/run makes) has all the tests use."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = _requirement_names(project["dependencies"])
    declared |= _requirement_names(project["optional-dependencies"]["dev"])
    local = {p.stem for p in (ROOT / "scripts").glob("*.py")} | {"aip", "tests", "scripts"}
    modules: set[str] = set()
    for source in [*(ROOT / "tests").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        for node in ast.walk(ast.parse(source.read_bytes())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - local - {"__future__"}
    providers = importlib.metadata.packages_distributions()
    missing = {
        module: providers.get(module)
        for module in third_party
        if not {d.lower() for d in providers.get(module, [])} & declared
    }
    assert not missing, f"imported by the tests or scripts, not in the dev extra: {missing}"
    # Tools the test command runs (scripts/check) and the wheel build without isolation.
    ran = set(re.findall(r"python3 -m ([a-z]+)", (ROOT / "scripts" / "check").read_text()))
    assert ran == {"ruff", "mypy", "pytest"}
    assert ran | {"hatchling", "pytest-asyncio", "pytest-timeout", "pytest-xdist"} <= declared


def test_warnings_are_errors_with_no_blanket_ignore() -> None:
    """A leaked file, socket or process shows up as an unraisable ResourceWarning: it must
    fail the test that leaked it, not be filtered away suite-wide."""
    pytest_ini = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    filters = pytest_ini["pytest"]["ini_options"]["filterwarnings"]
    assert filters[0] == "error"
    assert not [f for f in filters if "Unraisable" in f or "ResourceWarning" in f]
