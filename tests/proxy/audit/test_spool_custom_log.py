"""Spools of exited proxies reach an approver with a custom ``--audit-log``: proxies spool in
the default state dir (they do not know the custom log), so the approver looks there too,
never at a spool a live proxy still holds, and only in a private dir of ours. A spool whose
session never gave its key in a hello cannot be authenticated: it is recorded as
``spool_rejected`` and set aside."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aip.approver.audit.ingest import ingest_spool_dirs, orphan_spool_dirs
from aip.approver.audit.writer import AuditLog
from aip.approver.session_keys import SessionKeys, keys_dir
from aip.shared.audit.record import decision_record
from aip.shared.audit.spool import Spool
from aip.shared.outcomes import Outcome
from tests.support.approverproc import Approver, answer_program, wait_for
from tests.support.proxyproc import ProxyProcess, write_policy

SPEC = "allowed_tools: [read_file]\n"


def records(path: Path) -> list[dict[str, Any]]:
    try:
        data = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(x) for x in data.splitlines(keepends=True) if x.endswith("\n")]


def session_of(proc: ProxyProcess) -> str:
    wait_for(lambda: proc.decisions(), 10, "a decision record on the proxy's stderr")
    return str(proc.decisions()[0]["session"])


def test_exited_proxy_spool_reaches_an_approver_with_a_custom_log(
    tmp_path: Path,
    folder: Path,
    aip_env: dict[str, str],
    make_proxy: Callable[..., ProxyProcess],
) -> None:
    policy = write_policy(tmp_path, SPEC, "spool")
    nowhere = ["--approver", f"ipc://{folder}/nowhere.sock"]  # records stay in the spool
    gone = make_proxy(policy_path=policy, env=aip_env, extra_args=nowhere)
    gone.initialize()
    for n in range(3):
        assert "result" in gone.call(10 + n, "read_file", {"path": "/etc/hostname"})
    gone_session = session_of(gone)
    gone.close_stdin()
    gone.wait()
    live = make_proxy(policy_path=policy, env=aip_env, extra_args=nowhere)
    live.initialize()
    assert "result" in live.call(20, "read_file", {"path": "/etc/hostname"})
    live_session = session_of(live)
    spool = folder / "xdg-state" / "aip" / "spool"
    assert (spool / f"{gone_session}.jsonl").exists()
    assert (spool / f"{live_session}.jsonl").exists()

    custom = folder / "logs" / "custom-audit.jsonl"
    # AIP_AUDIT_LOG empty counts as unset (the helper would otherwise set one for us).
    env = {**os.environ, **aip_env, "AIP_AUDIT_LOG": ""}
    prog = answer_program(folder)
    with Approver(folder, f"exec:{prog}", args=["--audit-log", str(custom)], env=env).wait_ready():

        def gone() -> list[dict[str, Any]]:
            return [r for r in records(custom) if r.get("session") == gone_session]

        wait_for(lambda: gone(), 10, "the exited proxy's spool handled")
        (rejected,) = gone()  # it never said hello: no key, nothing of it can be trusted
        assert rejected["event"] == "spool_rejected"
        assert rejected["line"] == 0
        assert rejected["file"] == str(spool / f"{gone_session}.jsonl")
        assert not (spool / f"{gone_session}.jsonl").exists()
        assert (spool / f"{gone_session}.jsonl.rejected").exists()  # kept for a human
        # The same scan skipped the live proxy's spool: it holds its flock and re-sends itself.
        assert not [r for r in records(custom) if r.get("session") == live_session]
        assert (spool / f"{live_session}.jsonl").exists()
        live.close_stdin()
        live.wait()


def rec(session: str, rseq: int) -> dict[str, Any]:
    return decision_record(
        outcome=Outcome.POLICY_ALLOWED, session=session, agent_id="a", tool="t", rseq=rseq
    )


async def test_default_spool_dir_only_when_private_and_ours(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIP_AUDIT_LOG", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(folder / "state"))
    default = folder / "state" / "aip" / "spool"
    custom = folder / "logs" / "audit.jsonl"
    custom.parent.mkdir(mode=0o700)
    assert orphan_spool_dirs(custom) == [(folder / "logs" / "spool", False), (default, True)]
    # The default log itself: one dir, not scanned twice.
    assert orphan_spool_dirs(folder / "state" / "aip" / "aip-audit.jsonl") == [(default, False)]

    spool = Spool("3333333333333333", default)
    spool.append([rec("3333333333333333", 1)])
    spool.close()
    keys = SessionKeys(keys_dir(custom))
    assert keys.bind("3333333333333333", spool.key.hex())  # as its hello did
    default.chmod(0o755)  # not private: skipped (the file checks stay as they were)
    async with AuditLog(custom) as audit:
        assert await ingest_spool_dirs(audit, orphan_spool_dirs(custom), keys) == 0
        default.chmod(0o700)
        assert await ingest_spool_dirs(audit, orphan_spool_dirs(custom), keys) == 1
        assert await ingest_spool_dirs(audit, orphan_spool_dirs(custom), keys) == 0
    assert [r["rseq"] for r in records(custom)[1:]] == [1]
