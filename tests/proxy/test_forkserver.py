"""The per-user fork server (issue 16, start-up), with real processes: a session forked from it
answers, records and ends exactly as the in-process start (exit codes, signals, stdin EOF, a
crashing server, a killed launcher, policy and spawn errors, the sandbox); the server exits
when idle or when its code changes. Security: test_forkserver_security."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import forkkit
from tests.support.freshpy import loaded_after
from tests.support.proxyproc import RAW_SERVER, ProxyProcess, write_policy

# An MCP server that answers initialize with what it inherited: the process attributes a
# session must take from its launcher (the MCP server gets them from the proxy).
PROBE = r"""
import json, os, resource, sys
line = sys.stdin.readline()
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
facts = {
    "cwd": os.getcwd(), "umask": status["Umask"].strip(), "env": dict(os.environ),
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    "sigign": status["SigIgn"].strip(), "sigblk": status["SigBlk"].strip(),
    "nice": os.getpriority(os.PRIO_PROCESS, 0), "cpus": sorted(os.sched_getaffinity(0)),
    "cgroup": open("/proc/self/cgroup").read(),
}
reply = {"jsonrpc": "2.0", "id": json.loads(line)["id"], "result": facts}
sys.stdout.write(json.dumps(reply) + "\n"); sys.stdout.flush()
sys.stdin.read()
"""


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return write_policy(tmp_path, forkkit.SPEC)


def _exchange(p: ProxyProcess) -> list[dict[str, Any]]:
    replies = [p.initialize()]
    replies.append(p.call(1, "echo", {"text": "hi"}))
    replies.append(p.call(2, "delete_file", {"path": "/tmp/x"}))
    replies.append(p.call(3, "nope", {}))
    p.send(b"{not json\n")
    replies.append(p.recv())
    return replies


def _stable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in {"timestamp", "session", "pid", "agent_id"}}


def test_a_forked_session_answers_and_records_as_the_in_process_start(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    server = forkkit.warm(policy, tmp_path, run)
    results = {}
    for mode in ("off", "on"):
        p = forkkit.proxy(policy, tmp_path, run, AIP_FORK_SERVER=mode)
        try:
            replies = _exchange(p)
            session = forkkit.session_pid(p)
            p.close_stdin()
            code = p.wait()
            results[mode] = (replies, [_stable(r) for r in p.decisions()], code)
        finally:
            p.kill()
        assert (session is None) == (mode == "off"), p.log()
    assert results["on"] == results["off"]
    assert results["on"][2] == 0
    assert len(os.listdir(f"/proc/{server}/task")) == 1  # the server forks single-threaded


def test_the_session_takes_the_launchers_environment_folder_and_limits(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    forkkit.warm(policy, tmp_path, run)
    here = tmp_path / "work"
    here.mkdir()
    facts = {}
    for mode in ("off", "on"):
        code = (
            "import os, resource, signal, subprocess, sys;"
            "os.umask(0o027); os.chdir(sys.argv[1]); os.nice(3);"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (777, 4096));"
            "signal.signal(signal.SIGQUIT, signal.SIG_IGN);"
            "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2]);"
            "os.execv(sys.argv[2], sys.argv[2:])"
        )
        wrap = [*forkkit.CAPLESS, sys.executable, "-c", code, str(here)]
        env = {**forkkit.fork_env(run), "AIP_SANDBOX": "off", "AIP_FORK_SERVER": mode}
        env["AIP_PROBE_VALUE"] = "é ü"
        p = ProxyProcess(policy, [sys.executable, "-c", PROBE], tmp_path, env=env, wrap=wrap)
        try:
            reply = p.request(0, "initialize", {"protocolVersion": "2025-06-18"})
            assert (forkkit.session_pid(p) is None) == (mode == "off"), p.log()
            p.close_stdin()
            p.wait()
        finally:
            p.kill()
        facts[mode] = reply["result"]
        facts[mode]["env"].pop("AIP_FORK_SERVER")
    assert facts["on"] == facts["off"]
    seen = facts["on"]
    assert seen["cwd"] == str(here)
    assert seen["umask"] == "0027"
    assert seen["nofile"] == [777, 4096]  # a lowered hard limit too: read from /proc
    assert seen["nice"] >= 3
    assert int(seen["sigign"], 16) & (1 << (signal.SIGQUIT - 1))
    assert int(seen["sigblk"], 16) & (1 << (signal.SIGUSR2 - 1))
    assert seen["env"]["AIP_PROBE_VALUE"] == "é ü"


@pytest.mark.parametrize("how", ["crash", "sigterm", "sigint", "eof"])
def test_exit_status_and_signals_as_in_process(
    policy: Path, tmp_path: Path, run: Path, how: str
) -> None:
    forkkit.warm(policy, tmp_path, run)
    codes = {}
    for mode in ("off", "on"):
        server = [*RAW_SERVER, "--mode", "crash", "7"] if how == "crash" else RAW_SERVER
        # The status is the server's: it must end on stdin's EOF, not be terminated when the
        # tests' 0.3 s grace runs out on a loaded machine (143 once in a stress run).
        grace = {"AIP_PROXY_STDIN_GRACE_S": "10"}
        p = forkkit.proxy(policy, tmp_path, run, server, AIP_FORK_SERVER=mode, **grace)
        try:
            p.initialize()
            if how == "crash":
                reply = p.call(1, "echo", {"text": "x"})
                assert reply["error"]["data"]["reason"] == "server_exited"
            elif how == "eof":
                p.close_stdin()
            else:
                p.proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
            codes[mode] = p.wait()
        finally:
            p.kill()
    assert codes["on"] == codes["off"]
    assert codes["on"] == (7 if how == "crash" else 0)


def test_a_killed_launcher_ends_its_session_and_server_tree(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    forkkit.warm(policy, tmp_path, run)
    pidfile = tmp_path / "pids.json"
    p = forkkit.proxy(policy, tmp_path, run, [*RAW_SERVER, "--mode", "tree", str(pidfile)])
    try:
        p.initialize()
        session = forkkit.session_pid(p)
        assert session is not None, forkkit.server_log(run)
        assert forkkit.wait_for_file(pidfile), p.log()
        tree = json.loads(pidfile.read_text())
        p.proc.kill()
        p.proc.wait()
        assert forkkit.wait_gone([session, *tree]) == []
    finally:
        p.kill()


def test_policy_and_spawn_errors_as_in_process(policy: Path, tmp_path: Path, run: Path) -> None:
    forkkit.warm(policy, tmp_path, run)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: aip.io/v1alpha1\nkind: AgentPolicy\nmetadata: {name: x}\nspec:\n  nope: 1\n"
    )
    bad.chmod(0o600)
    for server, path in ((RAW_SERVER, bad), (["/nonexistent/server"], policy)):
        out = {}
        for mode in ("off", "on"):
            env = {**forkkit.fork_env(run), "AIP_FORK_SERVER": mode, "AIP_SANDBOX": "off"}
            p = ProxyProcess(path, server, tmp_path, env=env, wrap=forkkit.CAPLESS)
            try:
                out[mode] = (p.wait(), [line.split("] ", 1)[-1] for line in p.log().splitlines()])
            finally:
                p.kill()
        assert out["on"] == out["off"]
        assert out["on"][0] == 2


def test_the_sandbox_as_in_process(policy: Path, tmp_path: Path, run: Path) -> None:
    """--sandbox require through the fork server: what the in-process start does, here. As
    a normal user bwrap runs the server; as root without capabilities (CI) it cannot start,
    and both starts refuse alike."""
    server = forkkit.warm(policy, tmp_path, run)
    out = {}
    for mode in ("off", "on"):
        p = forkkit.proxy(policy, tmp_path, run, AIP_SANDBOX="require", AIP_FORK_SERVER=mode)
        try:
            try:
                reply: Any = p.call(1, "echo", {"text": "x"})["result"]
            except AssertionError:  # no answer: it refused to start
                reply = None
            p.close_stdin()
            code = p.wait()
            forked = forkkit.served(run, server, p.proc.pid, 30 if mode == "on" else 0)
            out[mode] = (reply, code, [line.split("] ", 1)[-1] for line in p.log().splitlines()])
        finally:
            p.kill()
        assert forked == (mode == "on"), p.log()
    assert out["on"] == out["off"]


def test_switched_off_no_server_is_started(policy: Path, tmp_path: Path, run: Path) -> None:
    for env, args in (({"AIP_FORK_SERVER": "off"}, []), ({}, ["--no-fork-server"])):
        full = {**forkkit.fork_env(run), "AIP_SANDBOX": "off", **env}
        p = ProxyProcess(
            policy, RAW_SERVER, tmp_path, env=full, extra_args=args, wrap=forkkit.CAPLESS
        )
        assert p.serve_once() == 0
        assert forkkit.sockets(run) == []


def test_the_server_exits_when_idle_or_when_its_code_changes(
    policy: Path, tmp_path: Path, run: Path
) -> None:
    extra = tmp_path / "extra"
    marker = extra / "aip" / "proxy" / "zz_marker.py"
    marker.parent.mkdir(parents=True)
    marker.write_text("# part of the code stamp\n")
    env = {"PYTHONPATH": str(extra)}
    p = forkkit.proxy(policy, tmp_path, run, **env)
    p.initialize()
    p.kill()
    server = forkkit.wait_for_server(run)
    marker.write_text("# changed\n")
    assert forkkit.wait_gone([server]) == [], forkkit.server_log(run)
    assert forkkit.sockets(run) == []
    idle = {**env, "AIP_FORK_SERVER_IDLE_S": "1.0"}
    p = forkkit.proxy(policy, tmp_path, run, **idle)
    p.initialize()
    p.kill()
    server = forkkit.wait_for_server(run)
    assert forkkit.wait_gone([server]) == [], forkkit.server_log(run)


def test_the_launcher_finds_the_folder_paths_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    from aip.proxy.forkserver import identity
    from aip.shared import paths

    for value in ("/tmp/some-runtime", None):
        if value is None:
            monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        else:
            monkeypatch.setenv("XDG_RUNTIME_DIR", value)
        assert identity.runtime_folder() == str(paths.runtime_dir())


def test_the_launcher_decides_before_the_heavy_imports() -> None:
    code = (
        "import sys, os; os.environ['AIP_FORK_SERVER'] = 'on';"
        "os.environ['XDG_RUNTIME_DIR'] = '/nonexistent-aip-test';"
        "import aip.proxy.cli as c; from aip.proxy.forkserver import launcher as l, identity as i;"
        "i.key(i.process_identity()); l._connect('/nonexistent-aip-test/aip/x.sock', {})"
    )
    heavy = ("typing", "logging", "socket", "pathlib", "hashlib", "subprocess", "yaml")
    assert loaded_after(code, heavy) == []
