"""Fixtures for proxy tests: real ``aip-proxy`` processes, always reaped."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # make ``tests.support`` importable however pytest is started
    sys.path.insert(0, str(ROOT))

from tests.support.proxyproc import RAW_SERVER, ProxyProcess, write_policy  # noqa: E402

DEFAULT_SPEC = """
allowed_tools: [read_file, echo, slow, chatty, ask_llm, client_roots, roots]
denied_tools: [delete_file]
tool_rules:
  - tool: write_file
    action: ask
"""


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return write_policy(tmp_path, DEFAULT_SPEC)


@pytest.fixture
def run() -> Iterator[Path]:
    """A private runtime folder for a test's fork servers (tests/support/forkkit), every
    server of it stopped at the end."""
    from tests.support import forkkit
    from tests.support.approverproc import short_dir

    with short_dir() as folder:
        os.chmod(folder, 0o700)
        try:
            yield folder
        finally:
            forkkit.stop_servers(folder)


@pytest.fixture
def make_proxy(tmp_path: Path, policy: Path) -> Iterator[Callable[..., ProxyProcess]]:
    started: list[ProxyProcess] = []

    def make(
        server: list[str] | None = None, *, policy_path: Path | None = None, **kw: Any
    ) -> ProxyProcess:
        proc = ProxyProcess(policy_path or policy, server or RAW_SERVER, tmp_path, **kw)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.kill()


@pytest.fixture
def aip_env(folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Private XDG dirs and no $AIP_AUDIT_LOG / endpoint / policy from the caller: only the
    defaults under ``folder`` and what an approver announces count."""
    for name in ("AIP_AUDIT_LOG", "AIP_APPROVER_ENDPOINT", "AIP_POLICY"):
        monkeypatch.delenv(name, raising=False)
    run = folder / "xdg-run"
    run.mkdir(mode=0o700)
    return {"XDG_RUNTIME_DIR": str(run), "XDG_STATE_HOME": str(folder / "xdg-state")}
