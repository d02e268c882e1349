"""Packaging: the three portions merge into one ``aip`` namespace and nothing else is importable."""

from __future__ import annotations

import subprocess
import sys
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
    names = set(zipfile.ZipFile(wheel).namelist())
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
