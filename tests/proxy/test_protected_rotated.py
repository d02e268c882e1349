"""The rotated (``<log>.<seq>``) and torn (``<log>.torn-*``) files of a custom ``--audit-log``
outside the state dir are refused through a real ``aip-proxy`` with a permissive policy, once
the approver announced the log in ``welcome``; an unrelated file beside them still passes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from aip.shared.outcomes import Outcome, row
from tests.support.approverproc import Approver, answer_program, wait_for
from tests.support.proxyproc import ProxyProcess, write_policy

PROTECTED = row(Outcome.PROTECTED_PATH).code
SPEC = "allowed_tools: [read_file]\n"


def test_rotated_and_torn_custom_logs_are_protected(
    tmp_path: Path,
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_proxy: Callable[..., ProxyProcess],
) -> None:
    for name in ("AIP_AUDIT_LOG", "AIP_APPROVER_ENDPOINT", "AIP_POLICY"):
        monkeypatch.delenv(name, raising=False)
    run = folder / "xdg-run"
    run.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(run), "XDG_STATE_HOME": str(folder / "xdg-state")}
    logs = folder / "logs"
    custom = logs / "custom-audit.jsonl"
    approver_env = {**os.environ, **env, "AIP_AUDIT_LOG": str(custom)}
    prog = answer_program(folder)
    with Approver(
        folder, f"exec:{prog}", args=["--audit-log", str(custom)], env=approver_env
    ).wait_ready() as approver:
        # Real files beside the log: the rotated and torn ones, and an unrelated one.
        for name in ("custom-audit.jsonl.1", "custom-audit.jsonl.torn-20261125T150000Z"):
            (logs / name).write_text("{}\n")
        unrelated = logs / "custom-audit.jsonl-notes.txt"
        unrelated.write_text("notes\n")
        proc = make_proxy(
            policy_path=write_policy(tmp_path, SPEC, "permissive"),
            env=env,
            extra_args=["--approver", approver.endpoint, "--agent-id", "agent-rotated"],
        )
        proc.initialize()
        wait_for(lambda: f"audit log {custom} is protected" in proc.log(), 10, "the welcome")
        refused = [
            logs / "custom-audit.jsonl.1",
            logs / "custom-audit.jsonl.2",  # the next rotation, not there yet
            logs / "custom-audit.jsonl.torn-20261125T150000Z",
            f"cat {logs}/../logs/custom-audit.jsonl.1",
        ]
        for n, path in enumerate(refused, start=100):
            reply = proc.call(n, "read_file", {"path": str(path)})
            assert reply.get("error", {}).get("code") == PROTECTED, (path, reply, proc.log())
        for n, path in enumerate([unrelated, logs / "other.jsonl.1"], start=200):
            reply = proc.call(n, "read_file", {"path": str(path)})
            assert "result" in reply, (path, reply, proc.log())
        proc.close_stdin()
        proc.wait()
