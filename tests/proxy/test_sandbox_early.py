"""The sandbox probe started early (issue 16: start-up): ``launch.Probe`` says what the blocking
probe said, a probe of another prefix is never used, and aip-proxy starts it before it imports
its relay (so bwrap's kernel work passes while the proxy loads)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aip.proxy.sandbox import bwrap, launch

PREFIX_OK = ["/usr/bin/bwrap", "--bind", "/", "/", "--dev", "/dev", "--"]


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_a_working_sandbox_has_no_problem() -> None:
    probe = launch.Probe(PREFIX_OK)
    assert probe.problem() is None
    assert probe.problem() is None  # answered once, kept


def test_a_refusal_is_the_program_s_last_line_with_the_hint(tmp_path: Path) -> None:
    fake = _script(tmp_path, "bwrap", "echo first >&2\necho 'bwrap: no namespaces' >&2\nexit 1\n")
    assert launch.Probe([fake, "--"]).problem() == "bwrap: no namespaces" + bwrap.userns_hint()
    silent = _script(tmp_path, "silent", "exit 3\n")
    assert launch.Probe([silent, "--"]).problem() == "exit status 3" + bwrap.userns_hint()


def test_a_program_that_cannot_run_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-bwrap")
    problem = launch.Probe([missing, "--"]).problem()
    assert problem is not None
    assert problem.startswith(f"{missing}: [Errno 2]")


def test_a_probe_past_its_time_is_killed_and_says_so(tmp_path: Path) -> None:
    slow = _script(tmp_path, "slow", "exec sleep 30\n")
    probe = launch.Probe([slow, "--"], timeout_s=0.2)
    assert (
        probe.problem()
        == f"{slow}: Command '{[slow, '--', probe_true()]}' timed out after 0.2 seconds"
    )


def probe_true() -> str:
    return shutil.which("true") or "/bin/true"


def test_close_ends_a_probe_nobody_needs(tmp_path: Path) -> None:
    slow = _script(tmp_path, "slow", "exec sleep 30\n")
    probe = launch.Probe([slow, "--"])
    probe.close()  # killed and reaped: no ResourceWarning (warnings are errors here)
    probe.close()


def test_check_uses_an_early_probe_only_for_the_same_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = launch.plan_for([], cwd=str(tmp_path), policy_path=None, command=["/bin/true"])
    prefix, problem = launch.prefix_for(plan)
    assert problem is None
    refusing = _script(tmp_path, "refusing", "echo 'bwrap: early says no' >&2\nexit 1\n")
    same = launch.Probe([refusing, "--"])
    same.prefix = list(prefix)  # as if it had run this prefix: its answer is used
    assert launch.check(plan, early=same) == ([], "bwrap: early says no" + bwrap.userns_hint())
    other = launch.Probe([refusing, "--"])  # another prefix: ended, and a fresh probe runs
    assert launch.check(plan, early=other) == (prefix, None)
    assert other._proc is None


def test_the_proxy_starts_the_probe_before_importing_its_relay(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata:\n  name: p\n"
        "spec:\n  allowed_tools: [x]\n"
    )
    policy.chmod(0o600)
    report = tmp_path / "report"
    server = probe_true()  # a program the sandbox leaves visible; it exits at once
    code = (
        "import sys; from aip.proxy.sandbox import early; from aip.proxy import cli\n"
        "start = early.start\n"
        "def spy(*a, **k):\n"
        "    probe = start(*a, **k)\n"
        f"    open({str(report)!r}, 'w').write(\n"
        "        f\"{'aip.proxy.runner' in sys.modules} {probe is not None}\")\n"
        "    return probe\n"
        "early.start = spy\n"
        f"sys.exit(cli.main(['--policy', {str(policy)!r}, '--', {server!r}]))\n"
    )
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "AIP_SANDBOX": "require"}
    env["AIP_APPROVER_ENDPOINT"] = f"ipc://{tmp_path}/none.sock"
    done = subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert report.read_text() == "False True"  # probing already, relay not yet imported


def test_server_prefix_takes_the_early_probe_s_plan_for_the_same_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = {"cwd": str(tmp_path), "policy_path": None, "command": ["/bin/true"]}
    probe = launch.start_probe(launch.Mode.REQUIRE, [str(tmp_path / "secret")], **inputs)
    assert probe is not None
    built: list[object] = []
    monkeypatch.setattr(launch, "plan_for", lambda *a, **k: built.append(1))
    prefix = launch.server_prefix(
        launch.Mode.REQUIRE, [str(tmp_path / "secret")], **inputs, early=probe
    )
    assert prefix == probe.prefix
    assert not built  # the early probe's plan, not a second build
