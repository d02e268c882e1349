"""Issue 4 end to end: real aip-approver and aip-proxy processes writing the central log.

The guide's jq query on a real run, the guide's record fields and types, kill -9 of the
approver during bursts from 10 proxies (every decided call exactly once, chain intact), and
an unwritable log denying asks until it is writable again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from aip.approver.audit.chain import verify_files
from aip.approver.audit.files import chain_files
from aip.approver.ctl import main as ctl
from aip.shared.outcomes import Outcome
from aip.shared.protocol.messages import MAX_AUDIT_RECORDS
from tests.audit_schema_check import assert_valid_log
from tests.support.approverproc import Approver, Dealer, answer_program, wait_for
from tests.support.proxyproc import MCP_SERVER, RAW_SERVER, ProxyProcess, write_policy

pytestmark = pytest.mark.e2e

GUIDE_JQ = 'select(.decision == "allow" and .reason == "human approved")'
SPEC = """
allowed_tools: [read_file]
denied_tools: [delete_file]
tool_rules:
  - tool: write_file
    action: ask
"""


def records(log: Path) -> list[dict[str, Any]]:
    out = []
    for path in chain_files(log):
        data = path.read_text()
        out += [json.loads(x) for x in data.splitlines(keepends=True) if x.endswith("\n")]
    return out


def decisions(log: Path) -> list[dict[str, Any]]:
    return [r for r in records(log) if r.get("event") == "decision"]


def start_proxy(
    folder: Path, endpoint: str, log: Path, agent: str, server: list[str] = MCP_SERVER
) -> ProxyProcess:
    policy = folder / "policy.yaml"
    if not policy.exists():
        write_policy(folder, SPEC, "policy")
    proxy = ProxyProcess(
        policy,
        server,
        folder,
        extra_args=["--approver", endpoint, "--agent-id", agent],
        env={"AIP_AUDIT_LOG": str(log)},
    )
    proxy.initialize()
    return proxy


def test_guide_jq_query_and_record_fields_on_a_real_run(folder: Path) -> None:
    control = folder / "answer.txt"
    control.write_text("allow\n")
    env = {**os.environ, "AIP_TEST_ANSWER_FILE": str(control)}
    log = folder / "aip-audit.jsonl"
    with Approver(
        folder, f"exec:{answer_program(folder)}", env={**env, "AIP_AUDIT_LOG": str(log)}
    ).wait_ready() as approver:
        proxy = start_proxy(folder, approver.endpoint, log, "agent-abc123")
        try:
            assert "result" in proxy.call(1, "read_file", {"path": "/tmp/x"})
            assert "result" in proxy.call(
                2, "write_file", {"path": "/etc/config.yaml", "content": "..."}
            )
            control.write_text("deny\n")
            assert (
                proxy.call(3, "write_file", {"path": "/etc/passwd", "content": "x"})["error"][
                    "code"
                ]
                == -32002
            )
            assert proxy.call(4, "delete_file", {"path": "/"})["error"]["code"] == -32001
            assert proxy.call(5, "unknown_tool", {})["error"]["code"] == -32001
            wait_for(lambda: len(decisions(log)) >= 5, 10, "five decision records")
        finally:
            proxy.close_stdin()
            proxy.wait()
            proxy.kill()
        assert approver.stop() == 0
    by_id = Counter(r["request_id"] for r in decisions(log))
    assert by_id == Counter({1: 1, 2: 1, 3: 1, 4: 1, 5: 1})  # initialize is not recorded
    found = [
        r for r in decisions(log) if r["decision"] == "allow" and r["reason"] == "human approved"
    ]
    assert [r["request_id"] for r in found] == [2]
    rec = found[0]
    # every field of the guide's example record, with the guide's types
    assert isinstance(rec["timestamp"], str)
    assert rec["timestamp"].endswith("Z")
    assert rec["agent_id"] == "agent-abc123"
    assert isinstance(rec["user"], str)
    assert rec["user"]
    assert rec["tool"] == "write_file"
    assert rec["arguments"]["path"] == "/etc/config.yaml"
    hd = rec["human_decision"]
    assert hd["approved"] is True
    assert isinstance(hd["response_time_ms"], int)
    assert isinstance(hd["dialog_shown_at"], str)
    assert "human_decision" not in next(r for r in decisions(log) if r["request_id"] == 1)
    if shutil.which("jq"):  # the guide's command, verbatim
        out = subprocess.run(
            f"cat {log} | jq -c '{GUIDE_JQ}'",
            shell=True,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert [json.loads(x)["request_id"] for x in out.stdout.splitlines()] == [2]
    assert_valid_log(log)
    assert ctl.main(["audit", "verify", str(log)]) == 0


def burst(proxies: list[ProxyProcess], start: int, n: int) -> None:
    """n calls per proxy, all sent before any reply is read; every one must be answered."""
    for proxy in proxies:
        for i in range(start, start + n):
            tool = "delete_file" if i % 5 == 0 else "read_file"
            proxy.send(
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "tools/call",
                    "params": {"name": tool, "arguments": {"path": f"/tmp/{i}"}},
                }
            )
    for proxy in proxies:
        collect(proxy, set(range(start, start + n)))


def collect(proxy: ProxyProcess, ids: set[int], timeout_s: float = 20) -> None:
    """Read replies until every id in ``ids`` was answered (denies overtake allows)."""
    deadline = time.monotonic() + timeout_s
    while ids:
        msg = proxy.recv(max(deadline - time.monotonic(), 0.01))
        if "method" not in msg:
            ids.discard(msg.get("id"))


def test_approver_killed_during_bursts_from_ten_proxies(folder: Path) -> None:
    log = folder / "aip-audit.jsonl"
    env = {**os.environ, "AIP_AUDIT_LOG": str(log)}
    prog = f"exec:{answer_program(folder, 'allow')}"
    first = Approver(folder, prog, env=env).wait_ready()
    proxies: list[ProxyProcess] = []
    try:
        proxies = [
            start_proxy(folder, first.endpoint, log, f"agent-{n}", RAW_SERVER) for n in range(10)
        ]
        burst(proxies, 1, 20)
        for proxy in proxies:  # a burst in flight while the approver dies
            for i in range(21, 41):
                proxy.send(
                    {
                        "jsonrpc": "2.0",
                        "id": i,
                        "method": "tools/call",
                        "params": {"name": "read_file", "arguments": {"path": "/x"}},
                    }
                )
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        for proxy in proxies:
            collect(proxy, set(range(21, 41)))
        burst(proxies, 41, 20)  # no approver at all: records wait in the spools
        with Approver(folder, prog, env=env).wait_ready():
            burst(proxies, 61, 20)
            wait_for(lambda: len(decisions(log)) >= 800, 30, "800 decision records", 0.1)
            for proxy in proxies:
                proxy.close_stdin()
            for proxy in proxies:
                proxy.wait()
    finally:
        first.kill()
        for proxy in proxies:
            proxy.kill()
    per_call = Counter((r["session"], r["request_id"]) for r in decisions(log))
    assert len(per_call) == 800  # 10 proxies x 80 calls, every one decided ...
    assert set(per_call.values()) == {1}  # ... and recorded exactly once
    assert Counter(r["agent_id"] for r in decisions(log)) == {f"agent-{n}": 80 for n in range(10)}
    report = verify_files(chain_files(log))
    assert report.ok, report.broken
    for path in chain_files(log):
        assert_valid_log(path)


def test_unwritable_log_denies_asks_until_writable(folder: Path) -> None:
    log = folder / "state" / "aip-audit.jsonl"
    log.mkdir(parents=True)  # a directory where the file should be: root-proof
    env = {**os.environ, "AIP_AUDIT_LOG": str(log)}
    with (
        Approver(folder, f"exec:{answer_program(folder, 'allow')}", env=env).wait_ready(),
        Dealer(f"ipc://{folder}/run/approver.sock") as d,
    ):
        d.hello()
        d.ask(1)
        assert d.decision().outcome is Outcome.AUDIT_UNAVAILABLE
        log.rmdir()

        def allowed() -> bool:
            d.ask(2)
            return d.decision().outcome is Outcome.HUMAN_APPROVED

        wait_for(allowed, 10, "an allowed ask once the log is writable", 0.2)
    kinds = [(r["event"], r.get("outcome")) for r in records(log)]
    assert kinds[0] == ("genesis", None)
    assert ("decision", "audit_unavailable") in kinds  # the denial, kept until writable
    assert kinds[-1] == ("decision", "human_approved")
    assert verify_files([log]).ok
    assert_valid_log(log)
    assert isinstance(MAX_AUDIT_RECORDS, int)


def test_ask_pending_when_the_approver_dies(folder: Path) -> None:
    """The proxy denies (approver_unavailable), records that, and adds a not_forwarded record;
    both reach the log once an approver is back."""
    log, shown = folder / "aip-audit.jsonl", folder / "shown.jsonl"
    env = {**os.environ, "AIP_AUDIT_LOG": str(log), "AIP_TEST_RECORD": str(shown)}
    first = Approver(folder, f"exec:{answer_program(folder, 'never')}", env=env, timeout_s=30)
    first.wait_ready()
    proxy = start_proxy(folder, first.endpoint, log, "agent-x", RAW_SERVER)
    try:
        proxy.send(
            {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {"name": "write_file", "arguments": {"path": "/etc/x", "content": ""}},
            }
        )
        wait_for(shown.exists, 10, "the dialog to be open")  # the ask reached the approver
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        reply = proxy.recv_id(7, timeout=20)
        assert reply["error"]["data"]["reason"] == "approver_unavailable"
        with Approver(folder, f"exec:{answer_program(folder, 'deny')}", env=env).wait_ready():

            def both() -> bool:
                return {r["event"] for r in records(log) if r.get("request_id") == 7} == {
                    "decision",
                    "not_forwarded",
                }

            wait_for(both, 20, "the proxy's records for the dead ask", 0.1)
    finally:
        first.kill()
        proxy.kill()
    mine = [r for r in records(log) if r.get("request_id") == 7]
    assert [r["event"] for r in mine] == ["decision", "not_forwarded"]
    assert mine[0]["outcome"] == "approver_unavailable"
    assert verify_files(chain_files(log)).ok
