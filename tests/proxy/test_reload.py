"""Policy hot reload with a real ``aip-proxy``: valid edits take effect while calls are in flight
(no answer lost or doubled), invalid or unsafe files are refused with the reason on stderr,
SIGHUP reloads, and each attempt is a ``policy_reload`` record (stderr and the central log)."""

from __future__ import annotations

import json
import os
import pwd
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.approverproc import Approver, short_dir, wait_for  # noqa: E402
from tests.support.proxyproc import RAW_SERVER, ProxyProcess, write_policy  # noqa: E402

BEFORE = """
allowed_tools: [echo]
tool_rules:
  - tool: write_file
    action: ask
"""
AFTER = """
allowed_tools: [echo, read_file]
tool_rules:
  - tool: write_file
    action: block
"""
BROKEN = """
allowed_tools: [echo, read_file]
tool_rulez: []
"""
ASK_AGAIN = """
allowed_tools: [echo, read_file]
tool_rules:
  - tool: write_file
    action: ask
"""
FAST_POLL = {"AIP_PROXY_RELOAD_INTERVAL_S": "0.05"}
FORBIDDEN = -32001
WINDOW = 32
AFTER_RELOAD = 300


def replace_policy(path: Path, spec: str, *, owner: int | None = None, mode: int = 0o600) -> None:
    """Write a new version next to the file and rename it over (what careful editors do)."""
    new = write_policy(path.parent, spec, name=path.stem + ".new")
    text = new.read_text().replace(f"name: {path.stem}.new", f"name: {path.stem}")
    new.write_text(text)
    new.chmod(mode)
    if owner is not None:
        os.chown(new, owner, -1)
    new.rename(path)


def reload_records(proc: ProxyProcess) -> list[dict[str, Any]]:
    return [r for r in proc.decisions() if r.get("event") == "policy_reload"]


def wait_log(proc: ProxyProcess, text: str, count: int = 1, timeout_s: float = 10.0) -> None:
    try:
        wait_for(lambda: proc.log().count(text) >= count, timeout_s, repr(text))
    except AssertionError:
        raise AssertionError(f"no {text!r} in the proxy log:\n{proc.log()}") from None


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., tuple[ProxyProcess, Path]]]:
    started: list[ProxyProcess] = []

    def make(spec: str = BEFORE, env: dict[str, str] | None = None, **kw: Any) -> Any:
        policy = write_policy(tmp_path, spec, name="reload")
        proc = ProxyProcess(policy, RAW_SERVER, tmp_path, env={**FAST_POLL, **(env or {})}, **kw)
        started.append(proc)
        proc.initialize()
        return proc, policy

    yield make
    for proc in started:
        proc.kill()


def test_valid_edit_takes_effect_while_calls_are_in_flight(start: Any) -> None:
    proc, policy = start()
    answers: dict[Any, list[dict[str, Any]]] = {}
    sent: list[int] = []
    window = threading.Semaphore(WINDOW)  # calls in flight at any time: up to WINDOW
    reloaded = threading.Event()
    done_sending = threading.Event()
    failures: list[BaseException] = []

    def sender() -> None:
        # Keep calls in flight across the swap, then AFTER_RELOAD more once it is logged.
        after = 0
        try:
            while after < AFTER_RELOAD and len(sent) < 100_000:
                assert window.acquire(timeout=20), "no answers for 20 s"
                n = len(sent) + 1
                sent.append(n)
                params = {"name": "read_file", "arguments": {"path": f"/tmp/{n}"}}
                proc.send({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": params})
                if reloaded.is_set():
                    after += 1
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)
        finally:
            done_sending.set()

    def reader() -> None:
        try:
            while not (done_sending.is_set() and len(answers) >= len(sent)):
                msg = proc.recv(20)
                answers.setdefault(msg["id"], []).append(msg)
                window.release()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=t, daemon=True) for t in (sender, reader)]
    for t in threads:
        t.start()
    wait_for(lambda: len(answers) >= WINDOW or bool(failures), 20, "the first answers")
    replace_policy(policy, AFTER)
    wait_log(proc, "policy reloaded (file changed)")
    reloaded.set()
    for t in threads:
        t.join(60)
    assert not failures, failures
    assert not any(t.is_alive() for t in threads)
    proc.send({"jsonrpc": "2.0", "id": "last", "method": "ping"})
    assert proc.recv_id("last") == {"jsonrpc": "2.0", "id": "last", "result": {}}  # no extras
    assert all(len(v) == 1 for v in answers.values()), "an answer came twice"
    assert sorted(answers, key=int) == sent
    allowed = ["result" in answers[i][0] for i in sent]
    # One switch point: the relay decides in order, each call under exactly one policy.
    switch = allowed.index(True)
    assert not any(allowed[:switch])
    assert all(allowed[switch:])
    assert all(answers[i][0]["error"]["code"] == FORBIDDEN for i in sent[:switch])
    assert switch >= WINDOW
    assert len(sent) - switch >= AFTER_RELOAD
    (rec,) = reload_records(proc)
    assert rec["policy"]["name"] == "reload"
    assert rec["previous_policy"]["name"] == "reload"
    assert rec["policy"]["sha256"] != rec["previous_policy"]["sha256"]
    assert rec["detail"].startswith("reloaded (file changed)")
    # Decision records after the swap name the new policy.
    last = [r for r in proc.decisions() if r.get("event") == "decision"][-1]
    assert last["policy"]["sha256"] == rec["policy"]["sha256"]


def test_invalid_edit_is_refused_and_the_old_policy_stays(start: Any) -> None:
    proc, policy = start()
    replace_policy(policy, BROKEN)
    wait_log(proc, "policy reload (file changed) refused")
    log = proc.log()
    assert f"{policy}:" in log
    assert "tool_rulez" in log
    assert proc.call(2, "read_file", {"path": "/tmp/x"})["error"]["code"] == FORBIDDEN
    assert "result" in proc.call(3, "echo", {"text": "still here"})
    (rec,) = reload_records(proc)
    assert rec["previous_policy"] is None
    assert rec["detail"].startswith("refused (file changed)")
    assert "tool_rulez" in rec["detail"]
    # Fixing the file is picked up on the next change.
    replace_policy(policy, AFTER)
    wait_log(proc, "policy reloaded (file changed)")
    assert "result" in proc.call(4, "read_file", {"path": "/tmp/x"})
    assert [r["detail"].split(" ")[0] for r in reload_records(proc)] == ["refused", "reloaded"]


def test_sighup_reloads(start: Any) -> None:
    proc, policy = start(env={"AIP_PROXY_RELOAD_INTERVAL_S": "0"})  # no polling at all
    replace_policy(policy, AFTER)
    assert proc.call(2, "read_file", {"path": "/tmp/x"})["error"]["code"] == FORBIDDEN
    proc.proc.send_signal(signal.SIGHUP)
    wait_log(proc, "policy reloaded (SIGHUP)")
    assert "result" in proc.call(3, "read_file", {"path": "/tmp/x"})
    proc.proc.send_signal(signal.SIGHUP)  # unchanged: nothing swapped, still running
    wait_log(proc, "unchanged")
    assert "result" in proc.call(4, "echo", {})
    assert proc.proc.poll() is None
    assert len(reload_records(proc)) == 1


def test_group_writable_file_is_refused(start: Any) -> None:
    proc, policy = start()
    replace_policy(policy, AFTER, mode=0o664)
    wait_log(proc, "policy reload (file changed) refused")
    assert "group- or world-writable" in proc.log()
    assert proc.call(2, "read_file", {"path": "/tmp/x"})["error"]["code"] == FORBIDDEN


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to nobody needs root (CI runs as root)")
def test_file_owned_by_someone_else_is_refused(start: Any) -> None:
    proc, policy = start()
    nobody = pwd.getpwnam("nobody").pw_uid
    replace_policy(policy, AFTER, owner=nobody)
    wait_log(proc, "policy reload (file changed) refused")
    assert f"owned by uid {nobody}" in proc.log()
    assert proc.call(2, "read_file", {"path": "/tmp/x"})["error"]["code"] == FORBIDDEN
    # The record reaches stderr in the relay's next record batch, not with the log line.
    wait_for(lambda: bool(reload_records(proc)), 10, "the policy_reload record")
    (rec,) = reload_records(proc)
    assert "owned by uid" in rec["detail"]


def test_ask_in_flight_keeps_its_decision_and_reloads_reach_the_audit_log() -> None:
    """A real approver: an ask held open across a reload that blocks its tool is still
    forwarded when allowed; the central log gets both policy_reload records."""
    with short_dir() as folder:
        go = folder / "go"
        prog = folder / "human.sh"
        # A scripted human that answers "allow" once the test says so (no timing involved).
        prog.write_text(
            f"#!/bin/sh\ncat >/dev/null\nwhile [ ! -e {go} ]; do sleep 0.01; done\necho allow\n"
        )
        prog.chmod(0o755)
        with Approver(folder, f"exec:{prog}", timeout_s=20).wait_ready() as approver:
            policy = write_policy(folder, BEFORE, name="reload")
            proc = ProxyProcess(
                policy,
                RAW_SERVER,
                folder,
                extra_args=["--approver", approver.endpoint, "--agent-id", "reload-agent"],
                env=FAST_POLL,
            )
            try:
                proc.initialize()
                proc.send(
                    {
                        "jsonrpc": "2.0",
                        "id": 7,
                        "method": "tools/call",
                        "params": {"name": "write_file", "arguments": {"path": "/tmp/a"}},
                    }
                )
                wait_log(proc, "asking a human about write_file")
                replace_policy(policy, BROKEN)
                wait_log(proc, "policy reload (file changed) refused")
                replace_policy(policy, AFTER)
                wait_log(proc, "policy reloaded")
                go.touch()
                answer = proc.recv_id(7, 20)
                assert "result" in answer, answer  # the ask kept its decision
                blocked = proc.call(8, "write_file", {"path": "/tmp/b"})
                assert blocked["error"]["code"] == FORBIDDEN  # the new policy blocks it

                def central() -> list[dict[str, Any]]:
                    if not approver.audit_path.exists():
                        return []
                    lines = approver.audit_path.read_text().splitlines()
                    return [json.loads(x) for x in lines if '"policy_reload"' in x]

                # The approver learns of the reload: its record of a later ask names the
                # policy that decided it.
                replace_policy(policy, ASK_AGAIN)
                wait_log(proc, "policy reloaded", count=2)
                assert "result" in proc.call(9, "write_file", {"path": "/tmp/c"})
                wait_for(lambda: len(central()) == 3, 15, "policy_reload records in the log")
                refused, done, again = central()
                (asked,) = [r for r in approver.decisions() if r["request_id"] == 9]
                assert asked["reason"] == "human approved"
                assert asked["policy"] == again["policy"]
                # ... and `aipctl approver status` lists this proxy with that policy.
                from aip.approver.ctl.approver_status import query_status

                status = query_status(approver.endpoint, 5)
                assert status is not None
                (mine,) = [x for x in status.proxies if x.pid == proc.proc.pid]
                assert mine.policy.sha256 == again["policy"]["sha256"]
                assert mine.agent_id == "reload-agent"
                assert refused["detail"].startswith("refused")
                assert refused["pid"] == proc.proc.pid  # a fork-server session names its launcher
                assert done["previous_policy"]["sha256"] == refused["policy"]["sha256"]
                assert done["agent_id"] == "reload-agent"
                assert "seq" in done
                assert "prev" in done
            finally:
                proc.kill()


LIMITED = """
allowed_tools: [echo]
tool_rules:
  - tool: echo
    action: allow
    rate_limit: "1/minute"
"""
LIMITED_WITH_DLP = """
allowed_tools: [echo]
tool_rules:
  - tool: echo
    action: allow
    rate_limit: "1/minute"
dlp:
  enabled: true
  patterns:
    - name: ticket
      regex: "TICKET-[0-9]{6}"
"""


def test_reload_brings_fresh_rate_buckets_new_dlp_rules_and_keeps_the_file_protected(
    start: Any,
) -> None:
    proc, policy = start(LIMITED)
    first = proc.call(1, "echo", {"text": "TICKET-123456"})
    assert "TICKET-123456" in first["result"]["content"][0]["text"]
    assert proc.call(2, "echo", {"text": "again"})["error"]["code"] == -32003
    replace_policy(policy, LIMITED_WITH_DLP)
    wait_log(proc, "policy reloaded")
    # The limiter belongs to the policy it was made for: the new policy starts with full buckets.
    reply = proc.call(3, "echo", {"text": "TICKET-123456"})
    text = reply["result"]["content"][0]["text"]
    assert "TICKET-123456" not in text  # the reloaded policy's DLP rule redacts the response
    assert "[REDACTED:ticket]" in text
    assert proc.call(4, "echo", {"text": "again"})["error"]["code"] == -32003
    # The policy file stays always-protected under the new policy too.
    # (protected paths are checked before rules and their rate limits: DESIGN §4.4)
    hit = proc.call(5, "echo", {"text": f"cat {policy}"})
    assert hit["error"]["code"] == -32007
    assert [r["outcome"] for r in proc.decisions() if r.get("request_id") == 5] == [
        "protected_path"
    ]


def test_a_removed_file_is_refused_and_a_restored_one_reloads(start: Any) -> None:
    proc, policy = start()
    saved = policy.read_text()
    policy.unlink()
    wait_log(proc, "policy reload (file changed) refused")
    assert "policy file not found" in proc.log()
    assert "result" in proc.call(2, "echo", {})  # the old policy still decides
    replace_policy(policy, AFTER)
    wait_log(proc, "policy reloaded (file changed)")
    assert "result" in proc.call(3, "read_file", {"path": "/tmp/x"})
    assert saved != policy.read_text()
