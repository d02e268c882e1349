"""DESIGN §4.5 through a real ``aip-proxy`` with a permissive policy: the policy file, the aip
state and runtime dirs (spool, HMAC key, socket dir) and the audit log a real approver
announces in ``welcome`` are refused whatever the policy says; other paths pass."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aip.shared.outcomes import Outcome, row
from tests.support.approverproc import Approver, answer_program, wait_for
from tests.support.proxyproc import ProxyProcess, write_policy

PROTECTED = row(Outcome.PROTECTED_PATH).code
SPEC = "allowed_tools: [read_file]\n"
ANNOUNCED = "audit log {} is protected"


def read(proc: ProxyProcess, request_id: int, path: Path | str) -> dict[str, Any]:
    return proc.call(request_id, "read_file", {"path": str(path)})


def assert_protected(proc: ProxyProcess, paths: list[Path | str]) -> None:
    for n, path in enumerate(paths, start=100):
        reply = read(proc, n, path)
        assert reply.get("error", {}).get("code") == PROTECTED, (path, reply, proc.log())


def assert_allowed(proc: ProxyProcess, path: Path) -> None:
    reply = read(proc, 99, path)
    assert "result" in reply, (reply, proc.log())


def test_policy_file_state_and_runtime_dirs_are_always_protected(
    tmp_path: Path,
    folder: Path,
    aip_env: dict[str, str],
    make_proxy: Callable[..., ProxyProcess],
) -> None:
    policy = write_policy(tmp_path, SPEC, "permissive")
    proc = make_proxy(policy_path=policy, env=aip_env)
    proc.initialize()
    state = folder / "xdg-state" / "aip"
    runtime = folder / "xdg-run" / "aip"
    assert_protected(
        proc,
        [
            policy,
            state / "aip-audit.jsonl",
            state / "notes.txt",
            state / "spool" / "0123456789abcdef.jsonl",
            state / "audit-hmac.key",
            runtime / "approver.sock",
            runtime / "approver.sock.lock",
            f"file://{runtime}/x",
            f"cat {state}/../aip/audit-hmac.key",  # a token of a string, made normal first
        ],
    )
    assert_allowed(proc, tmp_path / "notes.txt")
    assert_allowed(proc, folder / "xdg-state")  # an ancestor does not hit


def test_audit_log_announced_by_the_approver_is_protected_after_reload_too(
    tmp_path: Path,
    folder: Path,
    aip_env: dict[str, str],
    make_proxy: Callable[..., ProxyProcess],
) -> None:
    custom = folder / "logs" / "custom-audit.jsonl"
    approver_env = {**os.environ, **aip_env, "AIP_AUDIT_LOG": str(custom)}
    prog = answer_program(folder)
    with Approver(
        folder, f"exec:{prog}", args=["--audit-log", str(custom)], env=approver_env
    ).wait_ready() as approver:
        policy = write_policy(tmp_path, SPEC, "permissive")
        proc = make_proxy(
            policy_path=policy,
            env={**aip_env, "AIP_PROXY_RELOAD_INTERVAL_S": "0"},  # SIGHUP only
            extra_args=["--approver", approver.endpoint, "--agent-id", "agent-protect"],
        )
        proc.initialize()
        wait_for(lambda: ANNOUNCED.format(custom) in proc.log(), 10, "the welcome")
        announced = [
            custom,
            folder / "logs" / "audit-hmac.key",
            folder / "logs" / "spool" / "x.jsonl",
            folder / "run" / "approver.sock.lock",  # the endpoint's private dir
        ]
        assert_protected(proc, announced)
        assert_allowed(proc, tmp_path / "notes.txt")

        # A reload builds the context afresh: the announced log must stay in it.
        policy.write_text(policy.read_text().replace("read_file]", "read_file, echo]"))
        proc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "policy reloaded (SIGHUP)" in proc.log(), 10, "the reload")
        assert_protected(proc, [*announced, policy])
        assert_allowed(proc, tmp_path / "notes.txt")
        # While connected: a proxy that exits first spools what is unacknowledged beside
        # its own default log, not beside this approver's custom one.
        reason = row(Outcome.PROTECTED_PATH).audit_reason
        wait_for(
            lambda: sum(r.get("reason") == reason for r in approver.decisions()) >= 9,
            10,
            "the refusals in the central audit log",
        )
        proc.close_stdin()
        proc.wait()


# ---- the builder alone: welcome and reload swaps never undo each other ----


def _protection(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    from aip.proxy.protection import Protection
    from aip.proxy.relay.session import PolicyState
    from aip.shared.policy.load import load_policy
    from aip.shared.policy.ratelimit import RateLimiter

    monkeypatch.setenv("XDG_STATE_HOME", str(folder / "state"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder / "run"))
    policy = load_policy(write_policy(folder, SPEC, "unit"))
    guard = Protection(cwd=str(folder), endpoint=None, extra=("/extra/thing",))
    holder = type("Holder", (), {})()  # stands in for the Session: only .state is used
    holder.state = PolicyState(policy, RateLimiter(), guard.context(policy.path))
    guard.attach(holder)
    return guard, holder


def test_welcome_keeps_policy_and_limiter_and_reload_keeps_the_log(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aip.shared.policy.ratelimit import RateLimiter

    guard, holder = _protection(folder, monkeypatch)
    before = holder.state
    assert "/extra/thing" in before.context.always_protected
    assert before.policy.path in before.context.always_protected
    guard.on_audit_path("relative/log.jsonl")  # never from a sane approver: ignored
    assert holder.state is before
    guard.on_audit_path("/logs/a.jsonl")
    after = holder.state
    assert after.policy is before.policy
    assert after.limiter is before.limiter
    assert {"/logs/a.jsonl", "/logs/audit-hmac.key", "/logs/spool"} <= set(
        after.context.always_protected
    )
    guard.on_audit_path("/logs/a.jsonl")  # every reconnect repeats it: no new swap
    assert holder.state is after
    limiter = RateLimiter()
    guard.install(before.policy, limiter)
    assert holder.state.limiter is limiter
    assert "/logs/a.jsonl" in holder.state.context.always_protected


def test_concurrent_welcomes_and_reloads_lose_no_path(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from aip.proxy.protection import MAX_ANNOUNCED
    from aip.shared.policy.ratelimit import RateLimiter

    guard, holder = _protection(folder, monkeypatch)
    policy = holder.state.policy
    logs = [f"/logs/{n}/a.jsonl" for n in range(MAX_ANNOUNCED)]
    go = threading.Barrier(2)

    def welcomes() -> None:
        go.wait()
        for log in logs:
            guard.on_audit_path(log)

    def reloads() -> None:
        go.wait()
        for _ in range(200):
            guard.install(policy, RateLimiter())

    threads = [threading.Thread(target=welcomes), threading.Thread(target=reloads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert set(logs) <= set(holder.state.context.always_protected)
